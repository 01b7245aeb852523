"""`medseglens diff populations | saes | archs`: model diffing from the command line.

Each command writes one output folder (published atomically): JSON and CSV for
machines, PNG figures and `report.html` for people, and `section.json` for the
combined HTML report. The work is done by `MedSegLensLib.diffing.studies`; this
module only parses options, draws progress bars and prints the summary.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..progress import StageBars


def register(subparsers: argparse._SubParsersAction) -> None:
    diff = subparsers.add_parser("diff", help="model diffing: populations, two SAEs of one layer, two architectures")
    kinds = diff.add_subparsers(dest="diff_kind", metavar="KIND", required=True)

    pop = kinds.add_parser("populations", help="shared vs population-specific latents of one pooled SAE")
    pop.add_argument("--sae", required=True, metavar="SAE_DIR", help="SAE trained on the pooled cohorts")
    pop.add_argument(
        "--store",
        required=True,
        metavar="STORE",
        help="activation store of that model and layer, holding cases of two or more populations",
    )
    pop.add_argument("--ratio", type=float, default=2.0, help="smallest fold change called specific (default 2)")
    pop.add_argument("--alpha", type=float, default=0.05, help="Benjamini-Hochberg false discovery rate")
    pop.add_argument("--floor", type=float, default=1e-3, help="smallest firing frequency that counts (default 1e-3)")
    pop.add_argument("--bootstrap", type=int, default=1000, help="case-bootstrap replicates (default 1000)")
    _common(pop, labels=("--labels",))
    pop.set_defaults(handler=run_populations)

    saes = kinds.add_parser("saes", help="match two SAEs of one layer by decoder cosine; optional feature swapping")
    saes.add_argument("--a", required=True, metavar="SAE_A")
    saes.add_argument("--b", required=True, metavar="SAE_B")
    saes.add_argument(
        "--store-a", metavar="STORE", help="A's activations: feature swapping A->B and dead-latent filter"
    )
    saes.add_argument(
        "--store-b", metavar="STORE", help="B's activations: feature swapping B->A and dead-latent filter"
    )
    saes.add_argument("--name-a", help="name of A in tables (default: its folder name)")
    saes.add_argument("--name-b", help="name of B in tables (default: its folder name)")
    saes.add_argument("--threshold", type=float, default=0.7, help="decoder cosine that counts as matched (0.7)")
    _matching_options(saes)
    _common(saes, labels=("--labels-a", "--labels-b"))
    saes.set_defaults(handler=run_saes)

    archs = kinds.add_parser("archs", help="match latents of two networks by activation correlation on the same cases")
    archs.add_argument("--model-a", required=True, metavar="MODEL_DIR")
    archs.add_argument("--sae-a", required=True, metavar="SAE_DIR")
    archs.add_argument("--model-b", required=True, metavar="MODEL_DIR")
    archs.add_argument("--sae-b", required=True, metavar="SAE_DIR")
    archs.add_argument("--data", nargs="+", required=True, metavar="DIR", help="cohort folders (labelled cases)")
    archs.add_argument("--population", nargs="+", metavar="NAME", help="only cases of these populations")
    archs.add_argument("--max-cases", type=int, help="use at most this many cases (the first, in cohort order)")
    archs.add_argument("--permutations", type=int, default=50, help="block-permutation null replicates (default 50)")
    archs.add_argument(
        "--block-mm",
        type=float,
        default=32.0,
        help="edge of the blocks the permutation null shuffles, in mm (default 32)",
    )
    archs.add_argument("--alpha", type=float, default=0.05)
    archs.add_argument("--min-active", type=int, default=20, help="voxels a latent must fire on to be matched")
    archs.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    _matching_options(archs)
    _common(archs, labels=("--labels-a", "--labels-b"))
    archs.set_defaults(handler=run_archs)


def _common(parser: argparse.ArgumentParser, labels: tuple[str, ...]) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    for flag in labels:
        parser.add_argument(
            flag,
            metavar="LATENTS_JSON",
            help="latent labels from `medseglens interpret` (default: latents.json in the SAE folder)",
        )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def _matching_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method",
        choices=["auto", "dense", "pruned"],
        default="auto",
        help="assignment: dense (exact, up to a few thousand latents), pruned (candidates), auto",
    )
    parser.add_argument("--neighbours", type=int, default=8, help="candidates per latent for the pruned assignment")


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, from the parsed options."""
    skip = {"handler", "command", "diff_kind", "debug"}
    parts = ["medseglens", "diff", args.diff_kind]
    for key, value in vars(args).items():
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def _threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(int(args.threads))


def run_populations(args: argparse.Namespace) -> int:
    from ..diffing import PopulationDiffSettings, population_study

    _threads(args)
    settings = PopulationDiffSettings(
        ratio=args.ratio, alpha=args.alpha, frequency_floor=args.floor, n_boot=args.bootstrap, seed=args.seed
    )
    with StageBars() as bars:
        record = population_study(
            args.sae,
            args.store,
            args.out,
            settings=settings,
            labels=args.labels,
            overwrite=args.overwrite,
            command=_command(args),
            progress=bars,
        )
    s = record["summary"]
    print(
        f"{s['latents']} latents: {s['shared']} shared, {s['specific']} specific, {s['inconclusive']} inconclusive, "
        f"{s['absent']} absent"
    )
    for p, c in s["per_population"].items():
        print(f"  {p}: {c['active']} active, {c['enriched']} enriched, {c['depleted']} depleted")
    print(f"wrote {args.out}")
    return 0


def run_saes(args: argparse.Namespace) -> int:
    from ..diffing import DictionaryDiffSettings, dictionary_study

    _threads(args)
    names = (args.name_a or Path(args.a).name, args.name_b or Path(args.b).name)
    settings = DictionaryDiffSettings(
        threshold=args.threshold, method=args.method, neighbours=args.neighbours, seed=args.seed
    )
    with StageBars() as bars:
        record = dictionary_study(
            args.a,
            args.b,
            args.out,
            settings=settings,
            store_a=args.store_a,
            store_b=args.store_b,
            names=names,
            labels_a=args.labels_a,
            labels_b=args.labels_b,
            overwrite=args.overwrite,
            command=_command(args),
            progress=bars,
        )
    s = record["summary"]
    print(
        f"{s['matched_above_threshold']} pairs with decoder cosine >= {s['threshold']:g} "
        f"({s['fraction_of_a_matched']:.1%} of {names[0]}, {s['fraction_of_b_matched']:.1%} of {names[1]}; "
        f"chance {s['chance_fraction_above_threshold']:.1%}); orphans {s['orphans_a']} / {s['orphans_b']}"
    )
    for label, sw in record["swap"].items():
        print(
            f"  swap {label}: FVU {sw['fvu_own']:.3f} -> {sw['fvu_swap']:.3f}; surviving: shared "
            f"{sw['shared']['surviving']}/{sw['shared']['latents']} (median fired rows "
            f"{sw['shared']['median_fired']:g}), not shared {sw['not_shared']['surviving']}/"
            f"{sw['not_shared']['latents']} ({sw['not_shared']['median_fired']:g})"
        )
    print(f"wrote {args.out}")
    return 0


def run_archs(args: argparse.Namespace) -> int:
    from ..diffing import ArchDiffSettings, architecture_study

    _threads(args)
    settings = ArchDiffSettings(
        seed=args.seed,
        min_active_rows=args.min_active,
        n_permutations=args.permutations,
        block_mm=args.block_mm,
        alpha=args.alpha,
        method=args.method,
        neighbours=args.neighbours,
    )
    with StageBars() as bars:
        record = architecture_study(
            args.model_a,
            args.sae_a,
            args.model_b,
            args.sae_b,
            args.data,
            args.out,
            populations=args.population,
            max_cases=args.max_cases,
            settings=settings,
            precision=args.precision,
            labels_a=args.labels_a,
            labels_b=args.labels_b,
            overwrite=args.overwrite,
            command=_command(args),
            progress=bars,
        )
    s = record["summary"]
    print(
        f"{s['pairs']} matched pairs, {s['significant_bh']} significant (BH q < {s['alpha']:g}), "
        f"{s['above_fwer_threshold']} above the family-wise threshold r = {s['fwer_threshold']:.3f}"
    )
    print(f"wrote {args.out}")
    return 0
