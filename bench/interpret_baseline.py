#!/usr/bin/env python3
"""Interpret the baseline models' SAE latents on the synthetic cohorts (the figures in docs/interpret.md).

    python bench/interpret_baseline.py --work /work/runs/baseline --out workspace/interpret

For each architecture and layer:
1. the SAE, at the architecture's default SAE layer (`sae.defaults`) unless `--layer ARCH=NAME`:
   `--sae ARCH=DIR` if given (e.g. from `medseglens sae train`), else one trained
   here with the SAE core on stratified voxel rows captured from the training cohorts
   (`layer_features` + `sample_feature_map`, default quotas, `train_sae`), saved under OUT/saes/;
2. `interpret` on the held-out cohorts (as `medseglens interpret`), into OUT/<arch>-<layer>/;
3. `interpret-compare` of all runs into OUT/compare/ and a table of category counts in OUT/summary.md.

Finished steps are reused (delete their folders to redo them). Fixed seeds throughout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from MedSegLensLib.data import discover_cohorts  # noqa: E402
from MedSegLensLib.fileio import write_text_atomic  # noqa: E402
from MedSegLensLib.interpret import CATEGORIES, InterpretSettings, interpret_sae_run  # noqa: E402
from MedSegLensLib.interpret.compare import compare_runs, read_latents_document  # noqa: E402
from MedSegLensLib.models import load_model  # noqa: E402
from MedSegLensLib.sae import (  # noqa: E402
    SAEInfo,
    SAETrainingSettings,
    TensorRows,
    layer_features,
    sample_feature_map,
    save_sae,
    train_sae,
)
from MedSegLensLib.sae.defaults import DEFAULTS  # noqa: E402

TRAIN_COHORTS = ("adult_train", "adult_test", "pediatric_test", "ssa_test", "healthy_test")
HELD_OUT = ("adult_test", "pediatric_test", "ssa_test", "healthy_test")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", default=str(ROOT / "workspace" / "baseline"), help="baseline folder (cohorts/, models/)"
    )
    parser.add_argument("--out", default=str(ROOT / "workspace" / "interpret"))
    parser.add_argument("--archs", nargs="+", default=["unet", "segformer"])
    parser.add_argument("--layer", action="append", default=[], metavar="ARCH=LAYER", help="override a layer")
    parser.add_argument("--sae", action="append", default=[], metavar="ARCH=DIR", help="use this SAE (skips training)")
    parser.add_argument("--train-cohorts", nargs="+", default=list(TRAIN_COHORTS), help="pooled SAE training cohorts")
    parser.add_argument("--cohorts", nargs="+", default=list(HELD_OUT), help="cohorts to interpret on")
    parser.add_argument("--latents", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=12.0, help="SAE passes over the captured rows")
    parser.add_argument("--cards", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def pairs(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def train_layer_sae(model, layer: str, cohorts: list[Path], folder: Path, args) -> dict:
    """Capture stratified rows over the pooled cohorts and train an SAE on them."""
    rows = []
    cases = discover_cohorts(cohorts)
    started = time.time()
    for index, files in enumerate(cases):
        case = files.load()
        fmap = layer_features(model, case, layer)
        sampled = sample_feature_map(fmap.features, case.shape, case.label, case.tissue, seed=index)
        rows.append(sampled.activations)
    data = torch.cat(rows)
    captured = time.time() - started
    total = int(args.epochs * data.shape[0])
    config = SAETrainingSettings(
        n_latents=args.latents, k=args.k, total_rows=total, batch_size=min(4096, data.shape[0]), seed=0
    )
    sae, summary = train_sae(TensorRows(data), config)
    save_sae(sae, folder, SAEInfo(model.fingerprint, layer, training=summary))
    return {
        "rows": int(data.shape[0]),
        "cases": len(cases),
        "capture_s": round(captured, 1),
        "train_s": round(time.time() - started - captured, 1),
        "summary": summary,
    }


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    work, out = Path(args.work), Path(args.out)
    layers = {**{arch: default.layer for arch, default in DEFAULTS.items()}, **pairs(args.layer)}
    given = pairs(args.sae)
    runs, record = [], {"load_average_start": os.getloadavg()}
    for arch in args.archs:
        layer = layers[arch]
        sae_dir = Path(given[arch]) if arch in given else out / "saes" / f"{arch}-{layer}"
        if not (sae_dir / "sae.json").is_file():
            model = load_model(work / "models" / arch, device="cpu")
            record[f"{arch}_sae"] = train_layer_sae(
                model, layer, [work / "cohorts" / c for c in args.train_cohorts], sae_dir, args
            )
        run_dir = out / f"{arch}-{layer}"
        runs.append(run_dir)
        if (run_dir / "latents.json").is_file():
            continue
        started = time.time()
        interpret_sae_run(
            work / "models" / arch,
            sae_dir,
            [work / "cohorts" / c for c in args.cohorts],
            run_dir,
            settings=InterpretSettings(cards_per_category=args.cards),
            device="cpu",
            command="python bench/interpret_baseline.py",
        )
        record[f"{arch}_interpret_s"] = round(time.time() - started, 1)
    compare_runs(
        runs,
        out / "compare",
        names=[r.name for r in runs],
        overwrite=True,
        command="python bench/interpret_baseline.py",
    )
    record["load_average_end"] = os.getloadavg()
    lines = ["| run | active / latents | " + " | ".join(CATEGORIES) + " |", "|---|---|" + "---|" * len(CATEGORIES)]
    for run_dir in runs:
        document = read_latents_document(run_dir)
        counts = document["category_counts"]
        lines.append(
            f"| {run_dir.name} | {sum(counts.values())} / {len(document['latents'])} | "
            + " | ".join(str(counts[c]) for c in CATEGORIES)
            + " |"
        )
    write_text_atomic(
        out / "summary.md", "\n".join(lines) + "\n\n```\n" + json.dumps(record, indent=1, default=str) + "\n```\n"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
