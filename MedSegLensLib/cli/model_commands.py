"""`medseglens train | segment | evaluate | layers`: the segmentation backbones from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError, ParameterError
from ..fileio import check_can_write
from .case_args import add_case_arguments, case_files_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a segmentation model (U-Net or SegFormer) on labelled cohorts")
    arch = train.add_mutually_exclusive_group(required=True)
    arch.add_argument("--arch", choices=["unet", "segformer"], help="one of the project's backbones, default settings")
    arch.add_argument("--config", metavar="FILE", help="a ModelConfig JSON (any architecture, e.g. monai:SegResNet)")
    train.add_argument("--data", nargs="+", required=True, metavar="DIR", help="cohort folders with labelled cases")
    train.add_argument("--population", nargs="+", metavar="NAME", help="train only on cases of these populations")
    train.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to write")
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--batch-size", type=int, default=2)
    train.add_argument("--learning-rate", type=float, help="default: 2e-3 (unet), 1e-3 (segformer)")
    train.add_argument("--val-fraction", type=float, default=0.2, help="share of cases held out for validation Dice")
    train.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="model voxel spacing in mm (default: the data's)",
    )
    train.add_argument(
        "--patch", type=int, nargs=3, metavar=("X", "Y", "Z"), help="patch size in voxels (default 64 64 64)"
    )
    train.add_argument("--device", help="cpu, cuda, cuda:1 (default: a GPU when present)")
    train.add_argument("--resume", action="store_true", help="continue the unfinished run in MODEL_DIR (or start one)")
    train.add_argument("--overwrite", action="store_true", help="replace a model or run in MODEL_DIR")
    train.set_defaults(handler=run_train)

    segment = subparsers.add_parser("segment", help="segment one case (output in the input's exact geometry)")
    segment.add_argument("--model", required=True, metavar="MODEL_DIR")
    add_case_arguments(segment, with_seg=False)
    segment.add_argument(
        "--out",
        required=True,
        metavar="SEG.nii.gz",
        help="label map (.nii.gz, .nii, .nrrd) or Slicer segmentation (.seg.nrrd) to write",
    )
    _add_inference_options(segment)
    segment.set_defaults(handler=run_segment)

    evaluate = subparsers.add_parser("evaluate", help="per-case Dice and HD95 (WT, TC, ET) by population")
    evaluate.add_argument("--model", required=True, metavar="MODEL_DIR")
    evaluate.add_argument("--data", nargs="+", required=True, metavar="DIR", help="cohort folders with labelled cases")
    evaluate.add_argument(
        "--out", required=True, metavar="FILE.csv", help="per-case CSV; the summary goes to FILE.summary.csv"
    )
    evaluate.add_argument("--failure-dice", type=float, default=0.5, help="a region below this Dice is a failure")
    _add_inference_options(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    layers = subparsers.add_parser("layers", help="hookable layers of a model with their output shapes")
    layers.add_argument("--model", required=True, metavar="MODEL_DIR")
    layers.add_argument("--all", action="store_true", help="every module with a spatial output, not only the blocks")
    layers.add_argument("--json", action="store_true", help="print JSON instead of a table")
    layers.set_defaults(handler=run_layers)


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast, faster on CPUs with bf16"
    )
    parser.add_argument("--device", help="cpu, cuda (default: a GPU when present)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _config_for(args: argparse.Namespace):
    from ..models import ModelConfig, default_config

    if args.config:
        path = Path(args.config)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read the config JSON ({' '.join(str(exc).split())[:120]})") from None
        config = ModelConfig.from_json(data.get("config", data) if isinstance(data, dict) else data, source=str(path))
    else:
        config = default_config(args.arch)
    overrides = {}
    if args.spacing:
        overrides["spacing"] = tuple(args.spacing)
    if args.patch:
        overrides["patch_size"] = tuple(args.patch)
    return ModelConfig.from_json({**config.to_json(), **overrides}) if overrides else config


def run_train(args: argparse.Namespace) -> int:
    from ..models import TrainingSettings, labelled_cases, train_model
    from ..progress import TrainingBar

    config = _config_for(args)
    settings = TrainingSettings(
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        val_fraction=args.val_fraction,
    )
    cases = labelled_cases(args.data, args.population)
    bar = TrainingBar(f"train {config.architecture}")
    try:
        result = train_model(
            config,
            cases,
            args.out,
            settings,
            progress=bar,
            resume=args.resume,
            overwrite=args.overwrite,
            device=args.device,
        )
    finally:
        bar.close()
    last = result.history[-1] if result.history else {}
    val = f", validation Dice {last['val_dice']:.3f}" if last.get("val_dice") is not None else ""
    print(
        f"trained {config.architecture} on {len(cases)} case(s) in {result.elapsed_s / 60:.1f} min{val}; "
        f"wrote {result.model_dir} (weights sha256 {result.fingerprint[:12]})"
    )
    return 0


def run_segment(args: argparse.Namespace) -> int:
    from ..models import load_model
    from ..provenance import Provenance
    from ..segmentation_file import is_segmentation_file, write_segmentation_file

    files = case_files_from_args(args)
    check_can_write(args.out, args.overwrite)
    model = load_model(args.model, device=args.device)
    case = files.load(with_labels=False)
    prediction = model.predict(case, precision=args.precision)
    if is_segmentation_file(args.out):
        record = Provenance(
            latents=[],
            strengths=[],
            mode="none",
            model_sha256=model.fingerprint,
            extra={"command": "segment", "case_id": case.case_id},
        )
        path = write_segmentation_file(
            case.to_source(prediction.labels), case.source_grid, args.out, record.to_json(), overwrite=True
        )
    else:
        path = case.write_like_input(prediction.labels, args.out, dtype="uint8")
    counts = {name: int((prediction.labels == value).sum()) for value, name in model.config.labels if value}
    print(f"wrote {path} ({', '.join(f'{n} {c} voxels' for n, c in counts.items())})")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..models import evaluate_model, labelled_cases, load_model, summarise_by_population, write_evaluation
    from ..models.evaluation import format_summary, summary_path
    from ..progress import case_bar

    if not 0.0 < args.failure_dice <= 1.0:
        raise ParameterError(f"--failure-dice {args.failure_dice} must be in (0, 1]")
    check_can_write(args.out, args.overwrite)
    check_can_write(summary_path(args.out), args.overwrite)
    model = load_model(args.model, device=args.device)
    cases = labelled_cases(args.data)
    with case_bar("evaluate", len(cases)) as bar:

        def report(done: int, total: int, row: dict) -> None:
            bar.update(1)
            bar.set_postfix(case=row["case_id"], WT=f"{row['dice_WT']:.2f}", refresh=False)

        rows = evaluate_model(model, cases, progress=report, precision=args.precision)
    out, summary = write_evaluation(rows, args.out, args.failure_dice)
    print(format_summary(summarise_by_population(rows, args.failure_dice)))
    print(f"wrote {out} and {summary}")
    return 0


def run_layers(args: argparse.Namespace) -> int:
    from ..models import hookable_layers, load_model

    model = load_model(args.model, device="cpu")
    layers = hookable_layers(model, all_layers=args.all)
    if args.json:
        print(
            json.dumps(
                {"patch_size": list(model.config.patch_size), "layers": [layer.to_json() for layer in layers]}, indent=2
            )
        )
        return 0
    print(
        f"{model.config.architecture}, patch {'x'.join(map(str, model.config.patch_size))}, weights "
        f"{model.fingerprint[:12]}"
    )
    width = max(len(layer.name) for layer in layers)
    for layer in layers:
        shape = "x".join(map(str, layer.shape))
        print(f"{layer.name:<{width}}  {layer.role:<28} {shape:<18} stride {'x'.join(map(str, layer.stride))}")
    return 0
