"""`medseglens sae extract | train | eval`: sparse autoencoders on a backbone layer from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ParameterError
from ..fileio import check_can_write, write_json_atomic


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sae", help="capture activations, train and evaluate sparse autoencoders")
    commands = parser.add_subparsers(dest="sae_command", metavar="SAE_COMMAND", required=True)

    extract = commands.add_parser("extract", help="capture stratified activation rows of a layer into a store")
    _add_model_layer(extract)
    extract.add_argument("--data", nargs="+", required=True, metavar="DIR", help="cohort folders")
    extract.add_argument("--out", required=True, metavar="STORE", help="activation store folder to write")
    _add_capture_options(extract)
    extract.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="stored activations")
    extract.add_argument("--overwrite", action="store_true", help="replace an existing store")
    extract.set_defaults(handler=run_extract)

    train = commands.add_parser("train", help="train an SAE on a layer (captures the activations first if needed)")
    _add_model_layer(train)
    train.add_argument("--data", nargs="+", metavar="DIR", help="cohort folders (not needed with a complete --store)")
    train.add_argument("--out", required=True, metavar="SAE_DIR", help="SAE folder to write")
    train.add_argument(
        "--store", metavar="STORE", help="activation store to use or fill (default: SAE_DIR-activations)"
    )
    train.add_argument("--latents", type=int, help="number of latents (default: the architecture's default)")
    train.add_argument("--k", type=int, help="active latents per voxel (mean, for BatchTopK)")
    train.add_argument("--kind", choices=["batchtopk", "topk"], help="BatchTopK (threshold at inference) or TopK")
    train.add_argument("--rows", type=int, default=2_000_000, help="training rows drawn from the store (default 2M)")
    train.add_argument("--batch-size", type=int, default=4096)
    train.add_argument("--learning-rate", type=float, help="Adam step (default 8e-3*sqrt(1024/latents), at most 1e-2)")
    _add_capture_options(train)
    train.add_argument("--overwrite", action="store_true", help="replace an existing SAE (and an unfinished run)")
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("eval", help="held-out fidelity, sparsity, dead latents and Dice recovered")
    evaluate.add_argument("--model", required=True, metavar="MODEL_DIR")
    evaluate.add_argument("--sae", required=True, metavar="SAE_DIR")
    evaluate.add_argument("--data", nargs="+", required=True, metavar="DIR", help="held-out cohort folders")
    evaluate.add_argument("--out", required=True, metavar="FILE.json")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the stratified held-out rows")
    evaluate.add_argument("--device", help="cpu, cuda (default: a GPU when present)")
    evaluate.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing FILE.json")
    evaluate.set_defaults(handler=run_eval)


def _add_model_layer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="MODEL_DIR")
    parser.add_argument("--layer", metavar="NAME", help="layer to hook (default: the architecture's default layer)")


def _add_capture_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quota",
        action="append",
        default=[],
        metavar="STRATUM=N",
        help="rows per case from a stratum (background, brain, CSF, GM, WM, NCR, ED, ET); repeatable",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the voxel sampling and of the SAE training")
    parser.add_argument("--device", help="cpu, cuda (default: a GPU when present)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="backbone precision")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted capture or training run")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="run as one rank of a torchrun job (automatic when torchrun starts several ranks)",
    )


def parse_quotas(items: list[str]) -> dict[str, int]:
    """The default quotas with `STRATUM=N` overrides."""
    from ..sae import DEFAULT_QUOTAS, STRATA

    quotas = dict(DEFAULT_QUOTAS)
    for item in items:
        name, _, value = item.partition("=")
        if name not in STRATA or not value.strip().isdigit():
            raise ParameterError(f"--quota {item!r}: use STRATUM=N with N >= 0 and STRATUM one of {', '.join(STRATA)}")
        quotas[name] = int(value)
    return quotas


def _model_and_layer(args: argparse.Namespace):
    from ..distributed import job_group
    from ..models import load_model
    from ..sae.defaults import default_for

    job_group(args.distributed)  # under torchrun: join first, so `cuda` is this rank's own GPU
    model = load_model(args.model, device=args.device)
    return model, args.layer or default_for(model).layer


def _extract(model, layer: str, args: argparse.Namespace, out, overwrite: bool, dtype: str = "float16"):
    from ..data import discover_cohorts
    from ..distributed import extract_activations_distributed, job_group
    from ..distributed.extraction import cases_of_rank
    from ..errors import InputError
    from ..progress import case_bar
    from ..sae.extract import extract_activations

    if not args.data:
        raise ParameterError("--data is needed to capture activations (or pass a complete --store)")
    cases = discover_cohorts(args.data)
    if not cases:
        raise InputError(f"{', '.join(args.data)}: no cases found")
    group = job_group(args.distributed)
    share = cases if group is None else cases_of_rank(cases, group.rank, group.world_size)  # the bar: rank 0's share
    with case_bar(f"capture {layer}", len(share), disable=group is not None and group.rank != 0) as bar:

        def report(done: int, total: int, case_id: str, skipped: bool) -> None:
            bar.update(1)
            bar.set_postfix(case=case_id, skipped="yes" if skipped else "no", refresh=False)

        options = dict(resume=args.resume, overwrite=overwrite, dtype=dtype, precision=args.precision)
        if group is not None:
            return extract_activations_distributed(
                model, layer, cases, out, group, parse_quotas(args.quota), args.seed, report, **options
            )
        return extract_activations(model, layer, cases, out, parse_quotas(args.quota), args.seed, report, **options)


def run_extract(args: argparse.Namespace) -> int:
    model, layer = _model_and_layer(args)
    store = _extract(model, layer, args, args.out, args.overwrite, args.dtype)
    print(
        f"wrote {store.path}: {store.n_rows} rows of {store.d_in} channels from {len(store.cases)} case(s), "
        f"layer {layer}"
    )
    return 0


def _store_for_training(model, layer: str, args: argparse.Namespace):
    from ..sae.extract import check_store_for, complete_store

    path = Path(args.store) if args.store else Path(args.out).with_name(Path(args.out).name + "-activations")
    store = complete_store(path)
    if store is not None:
        check_store_for(store, model, layer)
        print(f"using the activation store {path} ({store.n_rows} rows)", file=sys.stderr)
        return store
    return _extract(model, layer, args, path, overwrite=False)


def run_train(args: argparse.Namespace) -> int:
    from ..distributed import fit_layer_sae_distributed, job_group
    from ..sae import SAETrainingSettings
    from ..sae.defaults import default_for
    from ..sae.fit import fit_layer_sae

    model, layer = _model_and_layer(args)
    check_can_write(args.out, args.overwrite)
    defaults = default_for(model) if None in (args.latents, args.k, args.kind) else None
    config = SAETrainingSettings(  # checks every setting before anything is written
        n_latents=defaults.n_latents if args.latents is None else args.latents,
        k=defaults.k if args.k is None else args.k,
        kind=args.kind or defaults.kind,
        total_rows=args.rows,
        batch_size=args.batch_size,
        lr=args.learning_rate,
        seed=args.seed,
        checkpoint_every=50,
    )
    store = _store_for_training(model, layer, args)
    group = job_group(args.distributed)
    if group is None:
        sae, summary = fit_layer_sae(
            model, layer, store, args.out, config, resume=args.resume, overwrite=args.overwrite
        )
    else:
        sae, summary = fit_layer_sae_distributed(
            model, layer, store, args.out, config, group, resume=args.resume, overwrite=args.overwrite
        )
    print(
        f"wrote {args.out}: {config.kind} SAE, {sae.d_in} -> {sae.n_latents} latents, k={config.k}, layer {layer}; "
        f"training FVU {summary['final_fvu']:.3f}, L0 {summary['final_l0']:.1f}, "
        f"dead {summary['dead_fraction']:.1%}"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..data import discover_cohorts
    from ..models import load_model
    from ..progress import case_bar
    from ..sae import check_sae_for_model, load_sae
    from ..sae.evaluation import evaluate_sae

    sae = load_sae(args.sae)
    model = load_model(args.model, device=args.device)
    check_sae_for_model(sae, args.sae, model)  # before any other check, work or progress bar
    check_can_write(args.out, args.overwrite)
    cases = discover_cohorts(args.data)
    with case_bar("evaluate SAE", len(cases)) as bar:

        def report(done: int, total: int, case_id: str) -> None:
            bar.update(1)
            bar.set_postfix(case=case_id, refresh=False)

        result = evaluate_sae(model, sae, cases, seed=args.seed, progress=report, precision=args.precision)
    write_json_atomic(args.out, {"model": str(args.model), "sae": str(args.sae), **result.to_json()})
    fid = result.fidelity
    recovered = ", ".join(f"{r} {v:.3f}" for r, v in result.dice_recovered.items())
    print(
        f"EV {fid.explained_variance:.3f} (per channel {fid.explained_variance_per_channel_mean:.3f}), "
        f"L0 {fid.l0_mean:.1f} (p95 {fid.l0_p95:.0f}), dead {fid.dead_fraction:.1%}; "
        f"Dice recovered {recovered or 'n/a (no labels)'}; wrote {args.out}"
    )
    return 0
