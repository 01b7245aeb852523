#!/usr/bin/env python3
"""How big must the dictionary be to be a lens? SAEs of several sizes on a demo workspace's activation stores.

For each model of the workspace (`models/<arch>`) and the layer of its activation
store (`stores/<arch>`, the demo's SAE layer; captured the same way into --out when the
workspace has none yet), trains one BatchTopK SAE per
dictionary size (k in proportion: k = latents / --k-ratio, or each fixed k of --k,
which separates the size from k) on the store's rows
(the workspace's own SAE is not touched), then measures on the workspace's
held-out test cohorts (first --cases-per-population cases of each population,
captured once and shared by every size):
- FVU and L0 on the cases' stratified rows (the training distribution, unseen cases);
- dead latents: never active on those rows (`dead rows`), and never active on any
  voxel of the cases (`dead voxels`, interpret's "inactive");
- the share of active latents with a held-out-validated anatomy label and the
  artefact latents (grid, seam, volume edge, outside head), by the very code of
  `medseglens interpret` (score_cases, label_all, latent_records), cards left out.
With --dice also Dice recovered (WT/TC/ET) with each SAE spliced into the network
(`sae.evaluation.evaluate_saes`; three more forward passes per case and size).

    python bench/dictionary_sweep.py --workspace ~/.cache/medseglens/demo --threads 1

The workspace is read only; SAEs and `dictionary_sweep.json` / `.md` land in --out
(a rerun reuses SAEs trained with the same settings).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from MedSegLensLib.data import CaseFiles, discover_cohorts  # noqa: E402
from MedSegLensLib.fileio import write_json_atomic, write_text_atomic  # noqa: E402
from MedSegLensLib.interpret.artefacts import ARTEFACT_CATEGORIES  # noqa: E402
from MedSegLensLib.interpret.categories import label_all, validation_summary  # noqa: E402
from MedSegLensLib.interpret.distribution import category_counts  # noqa: E402
from MedSegLensLib.interpret.evidence import LayerCodes  # noqa: E402
from MedSegLensLib.interpret.pipeline import InterpretSettings, score_cases  # noqa: E402
from MedSegLensLib.interpret.records import latent_records  # noqa: E402
from MedSegLensLib.interpret.sae_run import with_window_step  # noqa: E402
from MedSegLensLib.models import load_model  # noqa: E402
from MedSegLensLib.pipeline.backbone_stages import model_dir  # noqa: E402
from MedSegLensLib.pipeline.cohorts import cohort_folders  # noqa: E402
from MedSegLensLib.pipeline.sae_stages import store_dir  # noqa: E402
from MedSegLensLib.pipeline.settings import DemoSettings  # noqa: E402
from MedSegLensLib.sae import (  # noqa: E402
    DEFAULT_QUOTAS,
    ActivationStore,
    SAETrainingSettings,
    encode_features,
    evaluate_fidelity,
    layer_features,
    load_sae,
)
from MedSegLensLib.sae.defaults import default_for  # noqa: E402
from MedSegLensLib.sae.evaluation import evaluate_saes  # noqa: E402
from MedSegLensLib.sae.extract import complete_store, extract_activations, sample_case_rows  # noqa: E402
from MedSegLensLib.sae.fit import fit_layer_sae  # noqa: E402

SHORT = {
    "artefact: grid": "grid",
    "artefact: seam": "seam",
    "artefact: volume edge": "edge",
    "artefact: outside head": "outside",
}


def held_out_cases(workspace: Path, per_population: int) -> list[CaseFiles]:
    """The workspace's test cohorts (the demo's roles), the first `per_population` cases of each population."""
    cases = discover_cohorts(cohort_folders(workspace, DemoSettings().role("test")))
    chosen: dict[str, list[CaseFiles]] = {}
    for files in sorted(cases, key=lambda f: f.case_id):
        members = chosen.setdefault(files.population, [])
        if per_population <= 0 or len(members) < per_population:
            members.append(files)
    return [files for members in chosen.values() for files in members]


def capture(model, layer: str, cases: list[CaseFiles], seed: int) -> tuple[dict, torch.Tensor]:
    """Each case's layer map (kept for encoding every size) and its stratified rows (for FVU), one pass per case."""
    maps, rows = {}, []
    for files in cases:
        case = files.load(with_labels=True)
        fmap = layer_features(model, case, layer)
        maps[files.case_id] = fmap
        rows.append(sample_case_rows(fmap, case, DEFAULT_QUOTAS, seed).activations)
    return maps, torch.cat(rows)


def workspace_store(
    model, architecture: str, workspace: Path, out: Path, seed: int, layer: str | None = None
) -> ActivationStore:
    """The workspace's store of this model (at `layer` when given); while the demo has not captured it yet, or for
    another layer than its SAE's, one captured into --out as its `sae_extract` stage does (the first
    `sae_adult_cases` training cases and the calibration cohorts, default quotas)."""
    for store in (complete_store(store_dir(workspace, architecture)), complete_store(out)):
        if store is not None and layer in (None, store.info["layer"]):
            return store
    config = DemoSettings()
    adult = discover_cohorts(cohort_folders(workspace, config.role("train")))[: config.sae_adult_cases]
    cases = adult + discover_cohorts(cohort_folders(workspace, config.role("calibration")))
    print(f"{architecture}: no store in the workspace yet; capturing {len(cases)} cases into {out}", flush=True)
    layer = layer or default_for(model).layer
    return extract_activations(model, layer, cases, out, DEFAULT_QUOTAS, seed, resume=True)


def train(
    model, layer, store, out: Path, n_latents: int, k: int, rows: int, seed: int, lr_factor: float = 1.0
) -> tuple[object, float]:
    """The SAE of one size at `lr_factor` x its default learning rate (reused when --out already holds it);
    returns it and its training CPU seconds."""
    if not (out / "sae.json").is_file():
        settings = SAETrainingSettings(
            n_latents=n_latents,
            k=k,
            kind="batchtopk",
            total_rows=rows,
            batch_size=min(4096, rows),
            init_rows=min(16384, store.n_rows),
            seed=seed,
        )
        if lr_factor != 1:
            settings = dataclasses.replace(settings, lr=settings.learning_rate() * lr_factor)
        start = time.process_time()
        fit_layer_sae(model, layer, store, out, settings, overwrite=True, show_progress=False)
        (out / "train_cpu_seconds").write_text(f"{time.process_time() - start:.1f}\n")
    seconds_file = out / "train_cpu_seconds"
    return load_sae(out), float(seconds_file.read_text()) if seconds_file.is_file() else float("nan")


def labels_of(sae, maps: dict, cases: list[CaseFiles], model) -> dict:
    """Validated-label share and artefact counts, as `medseglens interpret` computes them (no cards)."""
    settings = with_window_step(InterpretSettings(cards_per_category=0), model).scoring

    def encode(case):
        return LayerCodes.from_case_codes(encode_features(sae, maps[case.case_id]))

    table = score_cases(cases, encode, sae.n_latents, settings, progress=False)
    records = latent_records(table, label_all(table))
    counts = category_counts(records)
    textured = sum(1 for r in records if r["active"] and r["artefact"]["kind"] not in (None, r["category"]))
    artefacts = {SHORT[kind]: counts[kind] for kind in ARTEFACT_CATEGORIES}
    return {**validation_summary(records), "artefacts": artefacts, "named_with_texture": textured}


def settings_of(args: argparse.Namespace) -> list[tuple[int, int, float]]:
    """(latents, k, learning-rate factor) of each SAE: k fixed by --k, else latents / --k-ratio."""
    return [
        (n_latents, k, lr_factor)
        for n_latents in args.sizes
        for k in args.k or [max(1, n_latents // args.k_ratio)]
        for lr_factor in args.lr_factors
    ]


def sweep_model(args, architecture: str) -> list[dict]:
    workspace, out = args.workspace, args.out / architecture
    model = load_model(model_dir(workspace, architecture), device="cpu")
    store_out = out / ("store" if args.layer is None else f"store-{args.layer}")
    store = workspace_store(model, architecture, workspace, store_out, args.seed, args.layer)
    layer = store.info["layer"]
    cases = held_out_cases(workspace, args.cases_per_population)
    start = time.process_time()
    maps, rows = capture(model, layer, cases, args.seed)
    print(
        f"{architecture} {layer}: store {store.n_rows} rows x {store.d_in} channels; {len(cases)} held-out cases "
        f"captured in {time.process_time() - start:.0f} CPU-s ({rows.shape[0]} stratified rows)",
        flush=True,
    )
    results, saes = [], {}
    for n_latents, k, lr_factor in settings_of(args):
        name = f"{n_latents}-k{k}-rows{args.rows}-seed{args.seed}" + (f"-lrx{lr_factor:g}" if lr_factor != 1 else "")
        name = name if args.layer is None else f"{args.layer}-{name}"
        sae, train_seconds = train(model, layer, store, out / name, n_latents, k, args.rows, args.seed, lr_factor)
        saes[name] = (layer, sae)
        start = time.process_time()
        fidelity = evaluate_fidelity(sae, rows.split(8192))
        labels = labels_of(sae, maps, cases, model)
        row = {
            "architecture": architecture,
            "layer": layer,
            "latents": n_latents,
            "k": k,
            "lr_factor": lr_factor,
            "train_rows": args.rows,
            "train_cpu_s": round(train_seconds, 1),
            "eval_cpu_s": round(time.process_time() - start, 1),
            "fvu": round(fidelity.fvu, 4),
            "l0": round(fidelity.l0_mean, 2),
            "dead_rows": round(fidelity.dead_fraction, 4),
            "dead_voxels": round(1 - labels["active"] / n_latents, 4),
            **labels,
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.dice:
        evaluations = evaluate_saes(model, saes, cases)
        for row, name in zip(results, saes):
            row["dice_recovered"] = {r: round(v, 3) for r, v in evaluations[name].dice_recovered.items()}
    return results


def markdown(rows: list[dict], command: str, cases: str) -> str:
    dice = any("dice_recovered" in r for r in rows)
    header = [
        "model",
        "layer",
        "latents",
        "k",
        "lr ×",
        "FVU",
        "L0",
        "dead (rows)",
        "dead (voxels)",
        "active",
        "validated",
    ]
    header += ["share", "of which on a grid", "grid", "seam", "edge", "outside"]
    header += ["Dice recovered WT/TC/ET"] if dice else []
    lines = [f"`{command}`", "", cases, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["architecture"], f"`{r['layer']}`", r["latents"], r["k"], f"{r.get('lr_factor', 1):g}"]
        cells += [f"{r['fvu']:.3f}", f"{r['l0']:.1f}"]
        cells += [f"{r['dead_rows']:.1%}", f"{r['dead_voxels']:.1%}", r["active"], r["validated"]]
        cells += [f"{r['validated_share']:.1%}", r["named_with_texture"], *(r["artefacts"][s] for s in SHORT.values())]
        if dice:
            cells.append("/".join(f"{r['dice_recovered'].get(x, float('nan')):.2f}" for x in ("WT", "TC", "ET")))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True, help="a demo workspace (read only)")
    parser.add_argument("--architectures", nargs="+", default=["unet", "segformer"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--k-ratio", type=int, default=16, help="k = latents / K_RATIO (default 16: 128 -> 8)")
    parser.add_argument(
        "--k", type=int, nargs="+", help="fixed k values, each tried at every size (overrides --k-ratio)"
    )
    parser.add_argument("--layer", help="layer to sweep (default: the workspace SAE's; another is captured into --out)")
    parser.add_argument(
        "--lr-factors", type=float, nargs="+", default=[1.0], help="learning rates as factors of the default (1)"
    )
    parser.add_argument("--rows", type=int, default=262144, help="training rows per SAE (default 262144)")
    parser.add_argument("--cases-per-population", type=int, default=3, help="held-out cases per population (0: all)")
    parser.add_argument("--dice", action="store_true", help="also Dice recovered (3 more passes per case and size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "workspace" / "dictionary_sweep")
    args = parser.parse_args(argv)
    if args.k and not 0 < min(args.k) <= max(args.k) < min(args.sizes):
        parser.error(f"--k {' '.join(map(str, args.k))}: each k must be at least 1 and below every size")
    args.workspace = args.workspace.expanduser().resolve()
    args.command = "python bench/dictionary_sweep.py " + " ".join(sys.argv[1:] if argv is None else argv)
    return args


def run(args: argparse.Namespace) -> list[dict]:
    """Every size of every model: the rows of the table (also written to --out as JSON and Markdown)."""
    torch.set_num_threads(args.threads)
    start = time.process_time()
    rows = [row for architecture in args.architectures for row in sweep_model(args, architecture)]
    note = (
        f"Held-out: the first {args.cases_per_population or 'all'} cases per population of the test cohorts; "
        f"SAEs trained on {args.rows} store rows each; {time.process_time() - start:.0f} CPU-s in all, "
        f"{args.threads} thread(s), {platform.node()}."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "dictionary_sweep.json", {"command": args.command, "note": note, "rows": rows})
    table = markdown(rows, args.command, note)
    write_text_atomic(args.out / "dictionary_sweep.md", table)
    print(table)
    return rows


if __name__ == "__main__":
    run(parse())
