"""Throughput of case-sharded extraction and data-parallel SAE training on 1 and 2 ranks.

    python bench/scaling.py [--cases 8] [--rows 491520] [--repeats 2]

Every configuration runs under a real torchrun (gloo on 127.0.0.1), timed inside the
ranks between two barriers, so process start-up and imports are not counted:
- extraction: the default U-Net (untrained weights: speed does not depend on them) over
  a synthetic adult cohort at 2 mm, default layer and quotas, into a fresh store,
  including the merge; rows/s = rows in the merged store / seconds;
- training: a BatchTopK SAE (128 -> 1024 latents, k = 16, global batch 4096) on
  planted rows read from an on-disk store; rows/s = rows trained / seconds.
Configurations: 1 rank x 1 thread (the baseline), 1 rank x 2 threads (the same cores
as two ranks), 2 ranks x 1 thread. Repeats alternate configurations; the best repeat
of each is kept. The machine is shared: the load average is printed with each run,
and rows per CPU-second (summed over ranks) shows the cost of distribution apart
from how many cores were free.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = [(1, 1), (1, 2), (2, 1)]  # (ranks, threads per rank)
D_IN, LATENTS, K, BATCH = 128, 1024, 16, 4096


def prepare(work: Path, cases: int, rows: int) -> None:
    """The cohort, an untrained default U-Net and a store of planted rows, written once."""
    import torch

    from MedSegLensLib.models import build_network, default_config, save_model
    from MedSegLensLib.sae import StoreWriter
    from MedSegLensLib.sae.synthetic import planted_rows
    from MedSegLensLib.synth import generate_cohort

    generate_cohort("adult", cases, seed=0, out=work / "cohort", spacing=2.0, progress=False)
    config = default_config("unet")
    save_model(build_network(config), config, work / "model")
    writer = StoreWriter(work / "train-store", D_IN, info={"bench": "planted"})
    planted = planted_rows(rows, D_IN, 768, 12, spread=0.75)[0]
    for start in range(0, rows, 65536):
        chunk = planted[start : start + 65536]
        writer.add_case(f"block-{start // 65536:03d}", "planted", chunk, torch.zeros(chunk.shape[0], 3))
    writer.close()


def launch(work: Path, ranks: int, threads: int, rows: int, tag: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    out = work / f"result-{tag}.json"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(ranks),
        str(Path(__file__).resolve()),
        "--rank-job",
        "--work",
        str(work),
        "--rows",
        str(rows),
        "--threads",
        str(threads),
        "--result",
        str(out),
        "--tag",
        tag,
    ]
    load_before = os.getloadavg()[0]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tag} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(out.read_text()), "load": (load_before, os.getloadavg()[0])}


def rank_job(args: argparse.Namespace) -> None:
    """Inside torchrun: time extraction and training on this job's ranks; rank 0 writes the result."""
    import torch

    from MedSegLensLib.data import discover_cohorts
    from MedSegLensLib.distributed import joined, train_sae_distributed
    from MedSegLensLib.distributed.extraction import extract_activations_distributed
    from MedSegLensLib.models import load_model
    from MedSegLensLib.sae import ActivationStore, SAETrainingSettings
    from MedSegLensLib.sae.defaults import default_for

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    with joined() as group:
        model = load_model(work / "model", device="cpu")
        cases = discover_cohorts([work / "cohort"])

        def timed(work_fn):
            """Wall seconds between barriers, and CPU seconds summed over the ranks."""
            group.barrier()
            wall, cpu = time.perf_counter(), time.process_time()
            result = work_fn()
            cpu = sum(group.gather_objects(time.process_time() - cpu))
            return result, time.perf_counter() - wall, cpu

        store, extract_s, extract_cpu = timed(
            lambda: extract_activations_distributed(
                model, default_for(model).layer, cases, work / f"store-{args.tag}", group, overwrite=True
            )
        )
        config = SAETrainingSettings(n_latents=LATENTS, k=K, total_rows=args.rows, batch_size=BATCH, seed=0)
        train_store = ActivationStore(work / "train-store")
        (_, summary), train_s, train_cpu = timed(
            lambda: train_sae_distributed(train_store, config, group, show_progress=False)
        )
        if group.rank == 0:
            Path(args.result).write_text(
                json.dumps(
                    {
                        "extract_rows": store.n_rows,
                        "extract_s": extract_s,
                        "extract_cpu": extract_cpu,
                        "cases": len(cases),
                        "d_in": store.d_in,
                        "train_rows": summary["rows_seen"],
                        "train_s": train_s,
                        "train_cpu": train_cpu,
                        "train_fvu": summary["final_fvu"],
                    }
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--rows", type=int, default=491_520, help="training rows (120 steps of 4096)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rank-job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_job:
        rank_job(args)
        return

    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        work = Path(tmp)
        prepare(work, args.cases, args.rows)
        best: dict[tuple[int, int], dict] = {}
        for repeat in range(args.repeats):
            for ranks, threads in CONFIGS:
                result = launch(work, ranks, threads, args.rows, f"{ranks}x{threads}-{repeat}")
                print(
                    f"repeat {repeat}: {ranks} rank(s) x {threads} thread(s): extraction "
                    f"{result['extract_rows'] / result['extract_s']:,.0f} rows/s "
                    f"({result['extract_rows'] / result['extract_cpu']:,.0f} per CPU-s), training "
                    f"{result['train_rows'] / result['train_s']:,.0f} rows/s "
                    f"({result['train_rows'] / result['train_cpu']:,.0f} per CPU-s), FVU {result['train_fvu']:.3f} "
                    f"(load average {result['load'][0]:.1f} -> {result['load'][1]:.1f})",
                    flush=True,
                )
                held = best.setdefault((ranks, threads), {})
                for key in ("extract", "train"):
                    for rate_key, seconds in ((key, f"{key}_s"), (f"{key}_cpu", f"{key}_cpu")):
                        held[rate_key] = max(held.get(rate_key, 0.0), result[f"{key}_rows"] / result[seconds])
        print(
            f"\n{args.cases} cases (layer width {result['d_in']}, {result['extract_rows']} rows); training "
            f"{args.rows} rows, {D_IN} -> {LATENTS} latents, k={K}, batch {BATCH}; best of {args.repeats}\n"
        )
        print(
            "| ranks x threads | extraction rows/s | x (1x1) | x (1x2) | per CPU-s | "
            "training rows/s | x (1x1) | x (1x2) | per CPU-s |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for config in CONFIGS:
            cells = []
            for key in ("extract", "train"):
                rate = best[config][key]
                cells += [
                    f"{rate:,.0f}",
                    f"{rate / best[(1, 1)][key]:.2f}",
                    f"{rate / best[(1, 2)][key]:.2f}",
                    f"{best[config][key + '_cpu']:,.0f}",
                ]
            print(f"| {config[0]} x {config[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
