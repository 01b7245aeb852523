"""`medseglens diff populations | saes | archs`: model diffing from the command line.

Each command writes one output folder (published atomically): JSON and CSV for
machines, PNG figures and `report.html` for people, and `section.json` for the
combined HTML report.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ..errors import CompatibilityError, InputError, ParameterError
from ..fileio import atomic_directory


def register(subparsers: argparse._SubParsersAction) -> None:
    diff = subparsers.add_parser("diff", help="model diffing: populations, two SAEs of one layer, two architectures")
    kinds = diff.add_subparsers(dest="diff_kind", metavar="KIND", required=True)

    pop = kinds.add_parser("populations", help="shared vs population-specific latents of one pooled SAE")
    pop.add_argument("--sae", required=True, metavar="SAE_DIR", help="SAE trained on the pooled cohorts")
    pop.add_argument("--store", required=True, metavar="STORE", help="activation store of that model and layer, "
                     "holding cases of two or more populations")
    pop.add_argument("--ratio", type=float, default=2.0, help="smallest fold change called specific (default 2)")
    pop.add_argument("--alpha", type=float, default=0.05, help="Benjamini-Hochberg false discovery rate")
    pop.add_argument("--floor", type=float, default=1e-3, help="smallest firing frequency that counts (default 1e-3)")
    pop.add_argument("--bootstrap", type=int, default=1000, help="case-bootstrap replicates (default 1000)")
    _common(pop, labels=("--labels",))
    pop.set_defaults(handler=run_populations)

    saes = kinds.add_parser("saes", help="match two SAEs of one layer by decoder cosine; optional feature swapping")
    saes.add_argument("--a", required=True, metavar="SAE_A")
    saes.add_argument("--b", required=True, metavar="SAE_B")
    saes.add_argument("--store-a", metavar="STORE", help="A's activations: feature swapping A->B and dead-latent filter")
    saes.add_argument("--store-b", metavar="STORE", help="B's activations: feature swapping B->A and dead-latent filter")
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
    archs.add_argument("--block", type=int, default=4, help="permutation block edge in common-grid voxels (default 4)")
    archs.add_argument("--alpha", type=float, default=0.05)
    archs.add_argument("--min-active", type=int, default=20, help="voxels a latent must fire on to be matched")
    archs.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    _matching_options(archs)
    _common(archs, labels=("--labels-a", "--labels-b"))
    archs.set_defaults(handler=run_archs)


def _common(parser: argparse.ArgumentParser, labels: tuple[str, ...]) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    for flag in labels:
        parser.add_argument(flag, metavar="LATENTS_JSON",
                            help="latent labels from `medseglens interpret` (default: latents.json in the SAE folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def _matching_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=["auto", "dense", "pruned"], default="auto",
                        help="assignment: dense (exact, up to a few thousand latents), pruned (candidates), auto")
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


def _bar(total: int, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _describe_sae(path: str, sae) -> str:
    sidecar = json.loads((Path(path) / "sae.json").read_text(encoding="utf-8"))
    return (f"SAE {path} ({sae.n_latents} latents, k {sae.config.k}, {sae.config.kind}, layer {sae.info.layer}, "
            f"weights {sidecar.get('weights_sha256', '')[:12]})")


def _describe_store(store) -> str:
    from collections import Counter

    counts = Counter(c["population"] for c in store.cases)
    info = store.info
    return (f"store {store.path} ({store.n_rows} rows of {len(store.cases)} cases: "
            + ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))
            + f"; model {str(info.get('model_fingerprint', '?'))[:12]}, layer {info.get('layer', '?')})")


def _check_store(store, sae, sae_dir: str) -> None:
    info = store.info
    if "model_fingerprint" in info and info["model_fingerprint"] != sae.info.model_fingerprint:
        raise CompatibilityError(
            f"{store.path}: activations come from model {str(info['model_fingerprint'])[:12]} but SAE {sae_dir} "
            f"belongs to {sae.info.model_fingerprint[:12]}; use the store captured from the SAE's model")
    if "layer" in info and info["layer"] != sae.info.layer:
        raise CompatibilityError(f"{store.path}: activations of layer {info['layer']!r}, SAE {sae_dir} encodes "
                                 f"{sae.info.layer!r}; use the store of the SAE's layer")


# -- populations ---------------------------------------------------------------------------------

def run_populations(args: argparse.Namespace) -> int:
    from ..diffing import PopulationDiffSettings, accumulate_usage, diff_populations, labels_for
    from ..diffing.outputs import write_population_outputs
    from ..sae import ActivationStore, load_sae

    _threads(args)
    settings = PopulationDiffSettings(ratio=args.ratio, alpha=args.alpha, frequency_floor=args.floor,
                                      n_boot=args.bootstrap, seed=args.seed)
    sae = load_sae(args.sae)
    store = ActivationStore(args.store)
    _check_store(store, sae, args.sae)
    labels = labels_for(args.sae, args.labels)
    with atomic_directory(args.out, overwrite=args.overwrite) as folder:
        with _bar(store.n_rows, "encoding store", "rows") as bar:
            usage = accumulate_usage(sae, store, progress=lambda done, total: bar.update(done - bar.n))
        usage.source.update({"sae": str(args.sae), "sae_fingerprint": sae.info.model_fingerprint,
                             "layer": sae.info.layer})
        diff = diff_populations(usage, settings)
        data = f"{_describe_store(store)} encoded with {_describe_sae(args.sae, sae)}"
        record = write_population_outputs(diff, usage, folder, data, _command(args), labels)
    s = record["summary"]
    print(f"{s['latents']} latents: {s['shared']} shared, {s['specific']} specific, {s['inconclusive']} inconclusive, "
          f"{s['absent']} absent")
    for p, c in s["per_population"].items():
        print(f"  {p}: {c['active']} active, {c['enriched']} enriched, {c['depleted']} depleted")
    print(f"wrote {args.out}")
    return 0


# -- two SAEs of one layer ------------------------------------------------------------------------

def run_saes(args: argparse.Namespace) -> int:
    from ..diffing import accumulate_usage, compare_dictionaries, labels_for, swap_features
    from ..diffing.matching import Matching
    from ..diffing.outputs import write_dictionary_outputs
    from ..sae import ActivationStore, load_sae

    _threads(args)
    sae_a, sae_b = load_sae(args.a), load_sae(args.b)
    if sae_a.info.layer != sae_b.info.layer or sae_a.info.model_fingerprint != sae_b.info.model_fingerprint:
        raise CompatibilityError(
            f"{args.a} encodes layer {sae_a.info.layer!r} of model {sae_a.info.model_fingerprint[:12]}, {args.b} layer "
            f"{sae_b.info.layer!r} of model {sae_b.info.model_fingerprint[:12]}; decoder cosine needs one model and "
            "layer: use `medseglens diff archs` to compare different networks")
    names = (args.name_a or Path(args.a).name, args.name_b or Path(args.b).name)
    name_of = {"a": names[0], "b": names[1]}
    stores = {}
    for key, path, sae, sae_dir in (("a", args.store_a, sae_a, args.a), ("b", args.store_b, sae_b, args.b)):
        if path:
            stores[key] = ActivationStore(path)
            _check_store(stores[key], sae, sae_dir)
    labels_a, labels_b = labels_for(args.a, args.labels_a), labels_for(args.b, args.labels_b)
    alive = {}
    for key, sae in (("a", sae_a), ("b", sae_b)):
        if key in stores:
            with _bar(stores[key].n_rows, f"firing of {name_of[key]}", "rows") as bar:
                usage = accumulate_usage(sae, stores[key], progress=lambda done, total: bar.update(done - bar.n))
            alive[key] = usage.fired.sum((0, 1)) > 0
    comparison = compare_dictionaries(sae_a, sae_b, args.threshold, alive.get("a"), alive.get("b"), args.method,
                                      args.neighbours, args.seed)
    swaps = {}
    m = comparison.matching
    reverse = Matching(m.b, m.a, m.similarity, m.n_b, m.n_a, m.method)
    for key, (enc, dec, matching, label) in {"a": (sae_a, sae_b, m, f"{names[0]}->{names[1]}"),
                                             "b": (sae_b, sae_a, reverse, f"{names[1]}->{names[0]}")}.items():
        if key in stores:
            store = stores[key]
            batches = ((rows, meta["case_index"].numpy()) for rows, meta in store.scan_with_metadata(8192))
            with _bar(store.n_rows, f"swap {label}", "rows") as bar:
                swaps[label] = swap_features(enc, dec, matching, batches, len(store.cases),
                                             progress=lambda done: bar.update(done - bar.n))
    data = f"{names[0]}: {_describe_sae(args.a, sae_a)}; {names[1]}: {_describe_sae(args.b, sae_b)}" + "".join(
        f"; {name_of[key]} rows: {_describe_store(store)}" for key, store in stores.items())
    with atomic_directory(args.out, overwrite=args.overwrite) as folder:
        record = write_dictionary_outputs(comparison, swaps, folder, data, _command(args), labels_a, labels_b, names)
    s = record["summary"]
    print(f"{s['matched_above_threshold']} pairs with decoder cosine >= {s['threshold']:g} "
          f"({s['fraction_of_a_matched']:.1%} of {names[0]}, {s['fraction_of_b_matched']:.1%} of {names[1]}; "
          f"chance {s['chance_fraction_above_threshold']:.1%}); orphans {s['orphans_a']} / {s['orphans_b']}")
    for label, sw in record["swap"].items():
        print(f"  swap {label}: FVU {sw['fvu_own']:.3f} -> {sw['fvu_swap']:.3f}; surviving: shared "
              f"{sw['shared']['surviving']}/{sw['shared']['latents']}, not shared "
              f"{sw['not_shared']['surviving']}/{sw['not_shared']['latents']}")
    print(f"wrote {args.out}")
    return 0


# -- two architectures ---------------------------------------------------------------------------

def run_archs(args: argparse.Namespace) -> int:
    from ..diffing import ArchDiffSettings, ArchitectureDiff, labels_for
    from ..diffing.arch_cases import case_latent_maps
    from ..diffing.outputs import write_architecture_outputs
    from ..models import labelled_cases, load_model
    from ..sae import load_sae

    _threads(args)
    if args.max_cases is not None and args.max_cases < 1:
        raise ParameterError(f"--max-cases must be >= 1, got {args.max_cases}")
    settings = ArchDiffSettings(seed=args.seed, min_active_rows=args.min_active, n_permutations=args.permutations,
                                block=args.block, alpha=args.alpha, method=args.method, neighbours=args.neighbours)
    model_a, model_b = load_model(args.model_a, device="cpu"), load_model(args.model_b, device="cpu")
    sae_a, sae_b = load_sae(args.sae_a), load_sae(args.sae_b)
    cases = labelled_cases(args.data, args.population)[: args.max_cases]
    if not cases:
        raise InputError(f"{', '.join(args.data)}: no cases to compare")
    labels_a, labels_b = labels_for(args.sae_a, args.labels_a), labels_for(args.sae_b, args.labels_b)
    study = ArchitectureDiff(sae_a.n_latents, sae_b.n_latents, settings)
    with _bar(len(cases), "cases (both networks)", "case") as bar:
        for files in cases:
            study.add_case(case_latent_maps(files.load(), model_a, sae_a, model_b, sae_b, args.precision))
            bar.update(1)
    with _bar(settings.n_permutations, "permutation null", "perm") as bar:
        result = study.result(progress=lambda done, total: bar.update(done - bar.n))
    names = (model_a.config.architecture, model_b.config.architecture)
    if names[0] == names[1]:
        names = (Path(args.model_a).name, Path(args.model_b).name)
    populations = sorted({c.population for c in cases})
    data = (f"{len(cases)} cases of {', '.join(args.data)} ({', '.join(populations)}); {names[0]}: model "
            f"{model_a.fingerprint[:12]}, {_describe_sae(args.sae_a, sae_a)}; {names[1]}: model "
            f"{model_b.fingerprint[:12]}, {_describe_sae(args.sae_b, sae_b)}")
    with atomic_directory(args.out, overwrite=args.overwrite) as folder:
        record = write_architecture_outputs(result, folder, data, _command(args), labels_a, labels_b, names)
    s = record["summary"]
    print(f"{s['pairs']} matched pairs, {s['significant_bh']} significant (BH q < {s['alpha']:g}), "
          f"{s['above_fwer_threshold']} above the family-wise threshold r = {s['fwer_threshold']:.3f}")
    print(f"wrote {args.out}")
    return 0
