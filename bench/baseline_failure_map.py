#!/usr/bin/env python3
"""The baseline failure map: adult-trained U-Net and SegFormer on held-out adult, pediatric, SSA and healthy cases.

One repeatable command, fixed seeds:

    python bench/baseline_failure_map.py [--work workspace/baseline] [--archs unet segformer]

1. generates the synthetic cohorts (`medseglens synth`'s library call; seeds below);
2. trains each architecture on the adult training cohort (`train_model`, as `medseglens train`);
3. evaluates each model on the held-out cohorts (`evaluate_model`, as `medseglens evaluate`);
4. writes `failure_map.md` (table), `failure_map.png` (figure), `failures.csv`, per-architecture
   `<arch>_scores.csv` (+ `.summary.csv`) and `run.json` (timings, machine load, settings).

Finished steps are kept: cohorts and models already in --work are reused (an
interrupted training run resumes from its checkpoint), so re-running the
command only redoes what is missing. Delete --work to start from scratch.
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

from MedSegLensLib.cli.model_commands import TrainingBar  # noqa: E402
from MedSegLensLib.fileio import write_json_atomic, write_text_atomic  # noqa: E402
from MedSegLensLib.models import (  # noqa: E402
    TrainingSettings,
    default_config,
    evaluate_model,
    labelled_cases,
    load_model,
    train_model,
    write_evaluation,
)
from MedSegLensLib.models.evaluation import csv_text, format_summary, summarise_by_population  # noqa: E402
from MedSegLensLib.models.failure_map import failure_rows, markdown_table, plot_failure_map  # noqa: E402
from MedSegLensLib.models.storage import MODEL_JSON  # noqa: E402
from MedSegLensLib.synth import generate_cohort  # noqa: E402

# cohort name -> (population, cohort seed); sizes come from the command line
COHORTS = {
    "adult_train": ("adult", 101),
    "adult_test": ("adult", 102),
    "pediatric_test": ("pediatric", 103),
    "ssa_test": ("ssa", 104),
    "healthy_test": ("healthy", 105),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(ROOT / "workspace" / "baseline"), help="folder for cohorts, models, results")
    parser.add_argument("--archs", nargs="+", default=["unet", "segformer"], choices=["unet", "segformer"])
    parser.add_argument("--spacing", type=float, default=2.0, help="synthetic cohort spacing in mm (synth's default)")
    parser.add_argument("--train-cases", type=int, default=40, help="adult cases for training + validation")
    parser.add_argument("--test-cases", type=int, default=16, help="held-out cases per tumour population")
    parser.add_argument("--healthy-cases", type=int, default=8)
    parser.add_argument("--unet-epochs", type=int, default=25)
    parser.add_argument("--segformer-epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--failure-dice", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MEDSEGLENS_THREADS", "2")))
    return parser.parse_args()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def ensure_cohorts(work: Path, args: argparse.Namespace, record: dict) -> dict[str, Path]:
    folders = {}
    for name, (population, seed) in COHORTS.items():
        count = {"adult_train": args.train_cases, "healthy_test": args.healthy_cases}.get(name, args.test_cases)
        folder = work / "cohorts" / name
        if not (folder / "manifest.csv").is_file():
            start = time.perf_counter()
            generate_cohort(population, count, seed, folder, spacing=args.spacing, progress=True)
            record["cohorts"][name] = {"seconds": round(time.perf_counter() - start, 1)}
        made = json.loads((folder / "synth.json").read_text())
        record["cohorts"].setdefault(name, {}).update(
            {k: made[k] for k in ("population", "seed", "cases", "spacing_mm", "severity", "generator_version")})
        folders[name] = folder
    return folders


def ensure_model(arch: str, epochs: int, train_folder: Path, work: Path, args: argparse.Namespace, record: dict) -> Path:
    model_dir = work / "models" / arch
    if (model_dir / MODEL_JSON).is_file():
        return model_dir
    settings = TrainingSettings(epochs=epochs, seed=args.seed, val_every=5)
    bar = TrainingBar(f"train {arch}")
    load_before = load_average()
    try:
        result = train_model(default_config(arch), labelled_cases([train_folder]), model_dir, settings,
                             progress=bar, resume=True)
    finally:
        bar.close()
    record["training"][arch] = {"epochs": epochs, "minutes": round(result.elapsed_s / 60, 2),
                                "load_average_before": load_before, "load_average_after": load_average(),
                                "final_val_dice": result.history[-1]["val_dice"]}
    return model_dir


def main() -> int:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    record_path = work / "run.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"cohorts": {}, "training": {}}
    record.update({"command": " ".join(sys.argv), "threads": args.threads, "cpus": os.cpu_count()})
    folders = ensure_cohorts(work, args, record)
    write_json_atomic(record_path, record)

    results: dict[str, list[dict]] = {}
    test_folders = [folders[name] for name in COHORTS if name != "adult_train"]
    for arch in args.archs:
        epochs = getattr(args, f"{arch}_epochs")
        model_dir = ensure_model(arch, epochs, folders["adult_train"], work, args, record)
        write_json_atomic(record_path, record)
        model = load_model(model_dir)
        start = time.perf_counter()
        rows = evaluate_model(model, labelled_cases(test_folders))
        record.setdefault("evaluation", {})[arch] = {"seconds_per_case": round((time.perf_counter() - start) / len(rows), 2),
                                                     "weights_sha256": model.fingerprint}
        write_evaluation(rows, work / f"{arch}_scores.csv", args.failure_dice)
        print(f"\n{arch}\n{format_summary(summarise_by_population(rows, args.failure_dice))}")
        results[arch] = rows

    table = markdown_table(results, args.failure_dice)
    write_text_atomic(work / "failure_map.md", table)
    failures = failure_rows(results, args.failure_dice)
    columns = ["architecture", "case_id", "population", "regions", "dice_WT", "dice_TC", "dice_ET"]
    write_text_atomic(work / "failures.csv", csv_text(failures, columns))
    plot_failure_map(results, work / "failure_map.png", args.failure_dice)
    record["load_average_end"] = load_average()
    write_json_atomic(record_path, record)
    print(f"\n{table}\n{len(failures)} failure(s); wrote {work / 'failure_map.md'}, {work / 'failure_map.png'}, "
          f"{work / 'failures.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
