#!/usr/bin/env python3
"""Which layer should the SAE read? A comparison of candidate layers of both backbones.

For each backbone (the adult-trained baseline U-Net and SegFormer) and each
candidate layer (encoder stages, bottleneck, decoder stages; not the logits):
1. capture stratified activation rows of the 40 adult training cases (one
   sliding-window pass per case serves every layer; default quotas, seed 0);
2. train one SAE per layer and kind (BatchTopK and TopK; 1024 latents, k 16,
   2M rows, seed 0);
3. evaluate on the held-out adult cases: explained variance (stratified rows and
   every brain voxel), L0, dead latents, Dice recovered per region with the SAE
   spliced into every sliding window, and alignment with tumour subregions (best
   single-latent voxel AUROC for NCR / ED / ET, and how many latents exceed 0.9).
Then a default layer per architecture is picked by the rule in `pick_default`.

    python bench/sae_layers.py --work workspace/sae_layers --baseline workspace/baseline --threads 1

Everything lands in --work (stores, SAEs, `sae_layers.json`, `sae_layers.md`); a
rerun reuses finished stores and SAEs, so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from MedSegLensLib.data import discover_cohort
from MedSegLensLib.fileio import write_json_atomic, write_text_atomic
from MedSegLensLib.models import hookable_layers, load_model
from MedSegLensLib.sae import SAETrainingSettings, load_sae
from MedSegLensLib.sae.evaluation import evaluate_saes
from MedSegLensLib.sae.extract import complete_store, extract_layers
from MedSegLensLib.sae.fit import fit_layer_sae

TARGETS = {"explained_variance": 0.90, "l0_mean": 32, "dead_fraction": 0.05, "dice_recovered_WT": 0.95}
MIN_ABLATION_COST = 0.1


def candidate_layers(model) -> list:
    """Encoder, bottleneck and decoder blocks; for the SegFormer whole stages and the fused decoder features;
    for the U-Net also `model.1`, the concatenation of encoder 0 and decoder 1 that the head reads."""
    layers = [info for info in hookable_layers(model) if "logits" not in info.role]
    if model.config.architecture == "segformer":
        layers = [info for info in layers if "block" not in info.role]
    if model.config.architecture == "unet":
        head_input = next(i for i in hookable_layers(model, all_layers=True) if i.name == "model.1")
        head_input.role = "encoder 0 + decoder 1 (head input)"
        layers.append(head_input)
    return layers


def stores_for(model, layers, cases, work: Path, seed: int) -> dict:
    paths = {info.name: work / "stores" / info.name for info in layers}
    todo = {name: path for name, path in paths.items() if complete_store(path) is None}
    if todo:
        start = time.perf_counter()
        extract_layers(
            model,
            todo,
            cases,
            seed=seed,
            resume=True,
            progress=lambda done, total, case_id, skipped: print(
                f"  capture {done}/{total} {case_id}{' (done before)' if skipped else ''}", file=sys.stderr
            ),
        )
        print(
            f"  captured {len(todo)} layer(s) of {len(cases)} cases in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
    return {name: complete_store(path) for name, path in paths.items()}


def saes_for(model, layers, stores, work: Path, args) -> tuple[dict, dict]:
    saes, seconds = {}, {}
    for info in layers:
        for kind in args.kinds:
            folder = work / "saes" / f"{info.name}-{kind}"
            if not folder.exists():
                config = SAETrainingSettings(
                    n_latents=args.latents,
                    k=args.k,
                    kind=kind,
                    total_rows=args.rows,
                    seed=args.seed,
                    checkpoint_every=100,
                )
                start = time.perf_counter()
                fit_layer_sae(model, info.name, stores[info.name], folder, config, resume=True)
                seconds[f"{info.name}-{kind}"] = round(time.perf_counter() - start, 1)
            saes[f"{info.name}-{kind}"] = (info.name, load_sae(folder))
    return saes, seconds


def row_of(arch: str, info, kind: str, store, result) -> dict:
    fid, brain = result.fidelity, result.fidelity_brain_voxels
    return {
        "architecture": arch,
        "layer": info.name,
        "role": info.role,
        "channels": info.channels,
        "stride": list(info.stride),
        "train_rows": store.n_rows,
        "kind": kind,
        "explained_variance": fid.explained_variance,
        "ev_per_channel": fid.explained_variance_per_channel_mean,
        "l0_mean": fid.l0_mean,
        "l0_p95": fid.l0_p95,
        "dead_fraction": fid.dead_fraction,
        "ev_brain_voxels": brain.explained_variance,
        "heldout_rows": fid.rows,
        "dice": result.dice,
        "dice_recovered": result.dice_recovered,
        "alignment": {region: a.to_dict() for region, a in result.alignment.items()},
    }


def meets_targets(row: dict) -> bool:
    return (
        row["explained_variance"] >= TARGETS["explained_variance"]
        and row["l0_mean"] <= TARGETS["l0_mean"]
        and row["dead_fraction"] <= TARGETS["dead_fraction"]
        and row["dice_recovered"].get("WT", 0.0) >= TARGETS["dice_recovered_WT"]
    )


def zero_ablation_cost(row: dict) -> float:
    """WT Dice lost when the layer's output is zeroed: how much the segmentation depends on the layer."""
    return row["dice"]["original"]["WT"] - row["dice"]["zero_ablation"]["WT"]


def alignment_score(row: dict) -> tuple[float, int]:
    """Mean best AUROC over NCR, ED, ET, then the number of latents above 0.9."""
    regions = row["alignment"].values()
    return (sum(a["best_auroc"] for a in regions) / 3, sum(a["latents_above_0_9"] for a in regions))


def pick_default(rows: list[dict], k: int) -> dict | None:
    """Among SAEs that meet every target, at layers the segmentation depends on (zeroing the layer costs at
    least MIN_ABLATION_COST WT Dice; elsewhere Dice recovered divides by almost nothing and latents could
    neither explain nor steer the output) with at least 2k channels (so a k-sparse code is sparser than
    the activations themselves): the best aligned with the tumour subregions."""
    eligible = [
        r for r in rows if meets_targets(r) and r["channels"] >= 2 * k and zero_ablation_cost(r) >= MIN_ABLATION_COST
    ]
    return max(eligible, key=alignment_score) if eligible else None


def table(rows: list[dict]) -> str:
    head = (
        "| arch | layer | role | C | stride | train rows | kind | EV | EV/ch | EV brain | L0 | L0 p95 | dead % "
        "| Dice rec. WT / TC / ET | best AUROC NCR / ED / ET | latents AUROC>0.9 NCR / ED / ET |"
    )
    lines = [head, "|" + "---|" * 16]
    for r in rows:
        rec = " / ".join(f"{r['dice_recovered'].get(x, float('nan')):.3f}" for x in ("WT", "TC", "ET"))
        auc = " / ".join(f"{r['alignment'][x]['best_auroc']:.3f}" for x in ("NCR", "ED", "ET"))
        strong = " / ".join(str(r["alignment"][x]["latents_above_0_9"]) for x in ("NCR", "ED", "ET"))
        lines.append(
            f"| {r['architecture']} | `{r['layer']}` | {r['role']} | {r['channels']} | {r['stride'][0]} | "
            f"{r['train_rows']} | {r['kind']} | {r['explained_variance']:.3f} | {r['ev_per_channel']:.3f} | "
            f"{r['ev_brain_voxels']:.3f} | {r['l0_mean']:.1f} | {r['l0_p95']:.0f} | {100 * r['dead_fraction']:.1f} | "
            f"{rec} | {auc} | {strong} |"
        )
    return "\n".join(lines)


def dice_table(rows: list[dict]) -> str:
    lines = [
        "| arch | layer | kind | Dice original WT / TC / ET | Dice SAE | Dice zero-ablation | WT cost of zeroing |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            " / ".join(f"{r['dice'][mode].get(x, float('nan')):.3f}" for x in ("WT", "TC", "ET"))
            for mode in ("original", "sae", "zero_ablation")
        ]
        lines.append(
            f"| {r['architecture']} | `{r['layer']}` | {r['kind']} | "
            + " | ".join(cells)
            + f" | {zero_ablation_cost(r):.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--baseline", required=True, type=Path, help="folder of bench/baseline_failure_map.py")
    parser.add_argument("--archs", nargs="+", default=["unet", "segformer"])
    parser.add_argument("--kinds", nargs="+", default=["batchtopk", "topk"])
    parser.add_argument("--latents", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--eval-cases", type=int, default=16, help="held-out adult cases to evaluate on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_cases = discover_cohort(args.baseline / "cohorts" / "adult_train")
    test_cases = discover_cohort(args.baseline / "cohorts" / "adult_test")[: args.eval_cases]
    rows, timings, defaults = [], {}, {}
    for arch in args.archs:
        work = args.work / arch
        model = load_model(args.baseline / "models" / arch, device="cpu")
        layers = candidate_layers(model)
        print(f"{arch}: {len(layers)} candidate layers", file=sys.stderr)
        stores = stores_for(model, layers, train_cases, work, args.seed)
        saes, timings[arch] = saes_for(model, layers, stores, work, args)
        start = time.perf_counter()
        results = evaluate_saes(
            model,
            saes,
            test_cases,
            seed=args.seed,
            progress=lambda done, total, case_id: print(f"  evaluate {done}/{total} {case_id}", file=sys.stderr),
        )
        timings[arch]["evaluation_s"] = round(time.perf_counter() - start, 1)
        arch_rows = [
            row_of(arch, info, kind, stores[info.name], results[f"{info.name}-{kind}"])
            for info in layers
            for kind in args.kinds
        ]
        rows.extend(arch_rows)
        best = pick_default(arch_rows, args.k)
        defaults[arch] = None if best is None else {"layer": best["layer"], "kind": best["kind"], "role": best["role"]}
    report = {
        "settings": vars(args) | {"work": str(args.work), "baseline": str(args.baseline)},
        "targets": TARGETS,
        "train_cases": len(train_cases),
        "heldout_cases": [c.case_id for c in test_cases],
        "rows": rows,
        "defaults": defaults,
        "timings_s": timings,
        "machine": platform.platform(),
    }
    write_json_atomic(args.work / "sae_layers.json", report)
    text = (
        f"{table(rows)}\n\n{dice_table(rows)}\n\nDefaults (targets met, channels >= 2k, zeroing costs >= "
        f"{MIN_ABLATION_COST} WT Dice, best alignment): {json.dumps(defaults)}\n"
    )
    write_text_atomic(args.work / "sae_layers.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
