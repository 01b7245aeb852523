"""`medseglens steer | steer-scales | study`: latent steering of one case, its units, and the recovery study."""

from __future__ import annotations

import argparse
import sys

from ..errors import ParameterError
from ..fileio import check_can_write
from .case_args import add_case_arguments, case_files_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    steer = subparsers.add_parser(
        "steer", help="steer SAE latents of one case; writes the steered segmentation with provenance"
    )
    steer.add_argument("--model", required=True, metavar="MODEL_DIR")
    steer.add_argument("--sae", required=True, metavar="SAE_DIR")
    add_case_arguments(steer, with_seg=False)
    steer.add_argument("--latent", required=True, metavar="I[,J...]", help="latent indices, comma-separated")
    steer.add_argument(
        "--alpha",
        required=True,
        metavar="A[,B...]",
        help="one strength per latent: additive alpha in [-10, 10] (x the latent's typical activation), "
        "multiplicative beta in [0, 10] (1 = unchanged), clamp value in [0, 10] (x typical; 0 ablates)",
    )
    steer.add_argument("--mode", choices=["additive", "multiplicative", "clamp"], default="additive")
    steer.add_argument(
        "--region",
        default="none",
        metavar="{none,tumour-margin:MM,mask:FILE}",
        help="where to steer: everywhere, the predicted tumour grown by MM mm, or a mask file",
    )
    steer.add_argument("--layer", help="hooked layer (default: the SAE's own)")
    steer.add_argument(
        "--fast-region",
        action="store_true",
        help="with a region: freeze instance-norm statistics and recompute only what the region reaches "
        "(approximate preview; see docs/steering.md)",
    )
    steer.add_argument(
        "--out",
        required=True,
        metavar="SEG.nii.gz",
        help="steered label map (.nii.gz, .nii, .nrrd) or Slicer segmentation (.seg.nrrd)",
    )
    steer.add_argument("--device", help="cpu, cuda (default: a GPU when present)")
    steer.add_argument("--overwrite", action="store_true", help="replace existing output files")
    steer.set_defaults(handler=run_steer)

    scales = subparsers.add_parser(
        "steer-scales", help="measure each latent's typical activation (the unit of additive strengths)"
    )
    scales.add_argument(
        "--sae", required=True, metavar="SAE_DIR", help="SAE folder; latent_scales.json is written into it"
    )
    scales.add_argument("--store", required=True, metavar="STORE_DIR", help="activation store the SAE was trained on")
    scales.add_argument("--quantile", type=float, default=0.99, help="quantile of the positive codes (default 0.99)")
    scales.add_argument("--rows", type=int, default=262_144, help="rows to measure on (default 262144)")
    scales.set_defaults(handler=run_scales)

    study = subparsers.add_parser(
        "study", help="failure-recovery study: oracle, label-free and baseline steering on cohorts"
    )
    study.add_argument("--model", required=True, metavar="MODEL_DIR")
    study.add_argument("--sae", required=True, nargs="+", metavar="SAE_DIR", help="one SAE per decoder layer to steer")
    study.add_argument(
        "--data", required=True, nargs="+", metavar="DIR", help="labelled cohort folders (all populations)"
    )
    study.add_argument(
        "--out", required=True, metavar="DIR", help="folder for tables (CSV/JSON), figures (PNG), report section"
    )
    study.add_argument(
        "--calibration",
        nargs="+",
        metavar="DIR",
        help="labelled cohorts for label-free selection (default: a seeded split of --data)",
    )
    study.add_argument(
        "--config", metavar="FILE", help="study settings JSON (see docs/steering.md); defaults otherwise"
    )
    study.add_argument(
        "--shard", metavar="I/N", help="evaluate every N-th case from I (run N processes, then once more)"
    )
    study.add_argument("--overwrite", action="store_true", help="replace an existing study folder")
    study.set_defaults(handler=run_study)


def _numbers(text: str, kind, option: str) -> list:
    try:
        return [kind(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise ParameterError(f"{option} {text!r}: expected comma-separated {kind.__name__} values, e.g. 3,17") from None


def run_steer(args: argparse.Namespace) -> int:
    from ..steering import RegionSpec, SteeringSpec, open_session, steering_provenance, write_steered_segmentation

    spec = SteeringSpec(
        tuple(_numbers(args.latent, int, "--latent")),
        tuple(_numbers(args.alpha, float, "--alpha")),
        args.mode,
        RegionSpec.parse(args.region),
    )
    files = case_files_from_args(args)
    check_can_write(args.out, args.overwrite)
    case = files.load(with_labels=False)
    session = open_session(args.model, args.sae, case, layer=args.layer, device=args.device, spec=spec)
    result = session.steer(spec, exact=not args.fast_region)
    provenance = steering_provenance(session, spec, exact=not args.fast_region)
    seg, sidecar = write_steered_segmentation(case, result.prediction.labels, args.out, provenance, args.overwrite)
    changed = int((result.prediction.labels != session.unsteered().labels).sum())
    print(
        f"wrote {seg} and {sidecar}: {changed} voxels changed by {spec.mode} steering of latents "
        f"{','.join(map(str, spec.latents))} ({result.windows_recomputed}/{result.windows_total} windows, "
        f"{result.seconds:.2f} s)",
        file=sys.stderr,
    )
    return 0


def run_scales(args: argparse.Namespace) -> int:
    from ..sae import ActivationStore, load_sae
    from ..steering.scales import compute_latent_scales, sae_sha256, save_latent_scales

    if not 0.5 <= args.quantile < 1.0:
        raise ParameterError(f"--quantile {args.quantile} must be in [0.5, 1)")
    if args.rows < 1:
        raise ParameterError(f"--rows {args.rows} must be positive")
    sae = load_sae(args.sae)
    store = ActivationStore(args.store)
    scales = compute_latent_scales(
        sae, [store.sample(args.rows, seed=0)], sae_sha256(args.sae), args.quantile, args.rows
    )
    path = save_latent_scales(scales, args.sae)
    alive = int((scales.typical > 0).sum())
    print(f"wrote {path}: {alive}/{sae.n_latents} latents fired on {scales.rows} rows", file=sys.stderr)
    return 0


def run_study(args: argparse.Namespace) -> int:
    from ..steering.study import StudySettings, run_recovery_study

    settings = StudySettings.from_file(args.config) if args.config else StudySettings()
    shard = _shard(args.shard) if args.shard else (0, 1)
    section = run_recovery_study(
        args.model,
        args.sae,
        args.data,
        args.out,
        settings,
        calibration=args.calibration,
        overwrite=args.overwrite,
        shard=shard,
    )
    if section is None:
        print(f"shard {shard[0]}/{shard[1]} done; run once more without --shard to write the report", file=sys.stderr)
    else:
        print(f"wrote {section} with tables and figures in {args.out}", file=sys.stderr)
    return 0


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        raise ParameterError(f"--shard {text!r}: use I/N, e.g. 0/2") from None
    if not 0 <= shard[0] < shard[1]:
        raise ParameterError(f"--shard {text}: I must be between 0 and N-1")
    return shard
