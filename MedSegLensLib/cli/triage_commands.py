"""`medseglens triage`: rank the cases of cohorts by SAE failure risk; worklist CSV, JSON and HTML."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError, OutputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "triage",
        help="rank cases by SAE failure risk beside label-free baselines (worklist.csv/.json, index.html)",
        description="Measure every case once (model + SAE), score it with the SAE risk and the baselines "
        "(softmax entropy, max probability, MONAI flip TTA volume variation, volume outlier, population), "
        "and write a worklist sorted by risk. The risk's weights come from labelled --calibration cohorts "
        "(or a reference.json an earlier run wrote); calibration cases are never ranked.",
    )
    parser.add_argument("--model", required=True, metavar="MODEL_DIR")
    parser.add_argument("--sae", required=True, metavar="SAE_DIR", help="an SAE trained on this model")
    parser.add_argument("--data", required=True, nargs="+", metavar="COHORT", help="cohort folders to rank")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--calibration", nargs="+", metavar="COHORT", help="labelled cohorts to fit the risk on")
    source.add_argument("--reference", metavar="FILE", help="reference.json of an earlier triage (same SAE)")
    parser.add_argument(
        "--weights",
        metavar="RULE",
        help="with --calibration: 'auto' (default) fits the risk's weights only with >= 10 calibration failures per "
        "feature, else adds the standardised features with equal weights; 'fitted' always fits",
    )
    parser.add_argument("--labels", metavar="FILE", help="latents.json with latent descriptions (default: SAE's)")
    parser.add_argument("--no-tta", action="store_true", help="skip the flip TTA baseline (4x fewer passes)")
    parser.add_argument(
        "--explain",
        metavar="CASE_ID",
        help="instead of ranking: draw why.png for this case (a latent's map beside MONAI GradCAM and occlusion)",
    )
    parser.add_argument(
        "--latent",
        type=int,
        help="with --explain: the latent to show (default: the one whose activation lies most in the predicted tumour)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="new (or empty) output folder")
    parser.add_argument("--device", help="cpu, cuda (default: a GPU when present)")
    parser.set_defaults(handler=run_triage)


def _check_out(out: Path) -> bool:
    """Whether an existing (empty) folder is to be replaced; refuses files and non-empty folders."""
    if not out.exists():
        return False
    if not out.is_dir() or any(out.iterdir()):
        raise OutputError(f"{out}: already exists and is not an empty folder; choose a new --out")
    return True


def _reference(path: str, sae_dir: str):
    from ..steering.scales import sae_sha256
    from ..triage import Reference

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as a triage reference ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a triage reference (reference.json of `medseglens triage`)")
    reference = Reference.from_json(data)
    if reference.sae_sha256 != sae_sha256(sae_dir):
        raise InputError(f"{path}: this reference was fit for another SAE; pass the reference of {sae_dir}")
    return reference


def run_triage(args: argparse.Namespace) -> int:
    from ..data import discover_cohorts
    from ..diffing.labels import label_text, labels_for
    from ..models import load_model
    from ..progress import StageBars
    from ..sae import check_sae_for_model, load_sae
    from ..steering.scales import sae_sha256
    from ..triage import MeasureSettings, ReferenceSettings, triage, worklist_rows, write_worklist

    out = Path(args.out)
    replace_empty = _check_out(out)
    if args.explain:
        return _explain(args, out, replace_empty)
    if not (args.calibration or args.reference):
        raise InputError("give --calibration COHORT (labelled cases to fit the risk on) or --reference FILE")
    if args.weights and args.reference:
        raise InputError("--weights chooses how --calibration fits the risk; a --reference keeps the weights it has")
    fit = ReferenceSettings(weights=args.weights or "auto")  # an unknown rule is refused before any network runs
    cases = discover_cohorts(args.data)
    calibration = discover_cohorts(args.calibration) if args.calibration else None
    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae)
    layer = check_sae_for_model(sae, args.sae, model)
    labels = labels_for(args.sae, args.labels)
    reference = _reference(args.reference, args.sae) if args.reference else None
    with StageBars() as bars:
        result = triage(model, sae, cases, calibration, reference, MeasureSettings(tta=not args.no_tta), fit, bars)
    descriptions = {j: label_text(labels, j) for j in labels}
    rows = worklist_rows(result.records, result.reference, descriptions)
    sha = sae_sha256(args.sae)
    header = {
        "model": {"fingerprint": model.fingerprint, "architecture": model.config.architecture},
        "sae": {"layer": layer, "sha256": sha, "n_latents": sae.n_latents},
    }
    if replace_empty:
        out.rmdir()
    result.reference.sae_sha256 = sha
    write_worklist(out, rows, header, result.reference)
    print(f"{out / 'index.html'}: {len(rows)} cases ranked; most at risk: {rows[0]['case_id'] if rows else '-'}")
    return 0


def _explain(args: argparse.Namespace, out: Path, replace_empty: bool) -> int:
    from ..data import discover_cohorts
    from ..fileio import atomic_directory
    from ..models import load_model
    from ..sae import check_sae_for_model, load_sae
    from ..triage.explain import explain_case, save_explanation
    from ..triage.measure import check_modalities

    cases = {c.case_id: c for c in discover_cohorts(args.data)}
    if args.explain not in cases:
        raise InputError(f"case {args.explain!r} is not in {' '.join(args.data)}; pass the cohort that holds it")
    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae)
    check_sae_for_model(sae, args.sae, model)
    check_modalities(model, [cases[args.explain]])
    explanation = explain_case(model, sae, cases[args.explain].load(with_labels=False), args.latent)
    if replace_empty:
        out.rmdir()
    with atomic_directory(out) as tmp:
        save_explanation(explanation, tmp / "why.png", f"{args.explain}: why it is on the worklist")
    print(f"{out / 'why.png'}: latent {explanation.latent}, MONAI GradCAM and occlusion on the same slices")
    return 0
