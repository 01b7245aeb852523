"""The three diffing studies as functions: explicit paths in, one output folder out.

These are what the CLI (`medseglens diff ...`) and the demo pipeline call. Each one
checks its inputs before any work, builds the folder under a temporary name and
publishes it with one rename (`atomic_directory`), and returns the JSON record it
wrote (its `summary` holds the headline numbers).

`progress(stage, done, total)` is called as work advances; the CLI draws one bar
per stage from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ParameterError
from ..fileio import atomic_directory
from .architectures import ArchDiffSettings, ArchitectureDiff
from .dictionaries import DictionaryDiffSettings, compare_dictionaries
from .labels import labels_for
from .matching import Matching
from .outputs import write_architecture_outputs, write_dictionary_outputs, write_population_outputs
from .populations import PopulationDiffSettings, diff_populations
from .sources import check_same_layer, check_store_fits_sae, describe_sae, describe_store
from .swap import swap_features
from .usage import accumulate_usage

PathLike = str | os.PathLike
Progress = Callable[[str, int, int], None]


def _quiet(stage: str, done: int, total: int) -> None:
    """Default progress: none."""


def _call(name: str, *args, **kwargs) -> str:
    """How a study was started, for the figures' provenance when no command line is given."""
    shown = [repr(str(a)) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items() if v is not None]
    return f"MedSegLensLib.diffing.{name}({', '.join(shown)})"


def population_study(
    sae_dir: PathLike,
    store_dir: PathLike,
    out_dir: PathLike,
    *,
    settings: PopulationDiffSettings | None = None,
    labels: PathLike | None = None,
    overwrite: bool = False,
    command: str | None = None,
    progress: Progress = _quiet,
) -> dict:
    """Shared (backbone) vs population-specific latents of one SAE trained on pooled cohorts.

    `store_dir` holds activations of the SAE's model and layer from two or more populations.
    Writes populations.json, latents.csv, strata.csv, backbone/volcano/specific PNGs, report.html.
    """
    from ..sae import ActivationStore, load_sae

    settings = settings or PopulationDiffSettings()
    sae, store = load_sae(sae_dir), ActivationStore(store_dir)
    check_store_fits_sae(store, sae, sae_dir)
    names = labels_for(sae_dir, labels)
    command = command or _call("population_study", sae_dir, store_dir, out_dir, settings=settings)
    with atomic_directory(out_dir, overwrite=overwrite) as folder:
        usage = accumulate_usage(sae, store, progress=lambda done, total: progress("encoding store", done, total))
        usage.source.update(
            {"sae": str(sae_dir), "sae_fingerprint": sae.info.model_fingerprint, "layer": sae.info.layer}
        )
        diff = diff_populations(usage, settings)
        data = f"{describe_store(store)} encoded with {describe_sae(sae_dir, sae)}"
        return write_population_outputs(diff, usage, folder, data, command, names)


def dictionary_study(
    sae_a_dir: PathLike,
    sae_b_dir: PathLike,
    out_dir: PathLike,
    *,
    settings: DictionaryDiffSettings | None = None,
    store_a: PathLike | None = None,
    store_b: PathLike | None = None,
    names: tuple[str, str] | None = None,
    labels_a: PathLike | None = None,
    labels_b: PathLike | None = None,
    overwrite: bool = False,
    command: str | None = None,
    progress: Progress = _quiet,
) -> dict:
    """Two SAEs of one model and layer (e.g. one per population): decoder-cosine matching, orphans, swapping.

    A store given for a side filters that side's dead latents and runs feature swapping from it.
    Writes saes.json, pairs.csv, swap_<A>-><B>.csv, matching.png, swap.png, report.html.
    """
    from ..sae import ActivationStore, load_sae

    settings = settings or DictionaryDiffSettings()
    sae = {"a": load_sae(sae_a_dir), "b": load_sae(sae_b_dir)}
    dirs = {"a": sae_a_dir, "b": sae_b_dir}
    check_same_layer(sae["a"], sae_a_dir, sae["b"], sae_b_dir)
    name = dict(zip("ab", names or (Path(sae_a_dir).name, Path(sae_b_dir).name)))
    stores = {key: ActivationStore(path) for key, path in (("a", store_a), ("b", store_b)) if path}
    for key, store in stores.items():
        check_store_fits_sae(store, sae[key], dirs[key])
    names_a, names_b = labels_for(sae_a_dir, labels_a), labels_for(sae_b_dir, labels_b)
    command = command or _call(
        "dictionary_study", sae_a_dir, sae_b_dir, out_dir, settings=settings, store_a=store_a, store_b=store_b
    )
    with atomic_directory(out_dir, overwrite=overwrite) as folder:
        alive = {}
        for key, store in stores.items():
            stage = f"firing of {name[key]}"
            usage = accumulate_usage(
                sae[key], store, progress=lambda done, total, stage=stage: progress(stage, done, total)
            )
            alive[key] = usage.fired.sum((0, 1)) > 0
        comparison = compare_dictionaries(
            sae["a"],
            sae["b"],
            settings.threshold,
            alive.get("a"),
            alive.get("b"),
            settings.method,
            settings.neighbours,
            settings.seed,
        )
        m = comparison.matching
        matchings = {"a": m, "b": Matching(m.b, m.a, m.similarity, m.n_b, m.n_a, m.method)}
        swaps = {}
        for key, store in stores.items():
            other = "b" if key == "a" else "a"
            stage = f"swap {name[key]}->{name[other]}"
            batches = ((rows, meta["case_index"].numpy()) for rows, meta in store.scan_with_metadata(8192))
            swaps[f"{name[key]}->{name[other]}"] = swap_features(
                sae[key],
                sae[other],
                matchings[key],
                batches,
                len(store.cases),
                progress=lambda done, stage=stage, rows=store.n_rows: progress(stage, done, rows),
            )
        data = (
            f"{name['a']}: {describe_sae(sae_a_dir, sae['a'])}; {name['b']}: {describe_sae(sae_b_dir, sae['b'])}"
            + "".join(f"; {name[key]} rows: {describe_store(store)}" for key, store in stores.items())
        )
        return write_dictionary_outputs(
            comparison, swaps, folder, data, command, names_a, names_b, (name["a"], name["b"])
        )


def architecture_study(
    model_a_dir: PathLike,
    sae_a_dir: PathLike,
    model_b_dir: PathLike,
    sae_b_dir: PathLike,
    data: Sequence[PathLike],
    out_dir: PathLike,
    *,
    populations: Sequence[str] | None = None,
    max_cases: int | None = None,
    settings: ArchDiffSettings | None = None,
    precision: str = "fp32",
    labels_a: PathLike | None = None,
    labels_b: PathLike | None = None,
    overwrite: bool = False,
    command: str | None = None,
    progress: Progress = _quiet,
) -> dict:
    """Latents of two networks (e.g. U-Net vs SegFormer) matched by activation correlation on the same cases.

    `data` are cohort folders of labelled cases; both networks run on each case and each SAE
    encodes its own layer. Significance from the block-permutation null of `settings`.
    Writes archs.json, pairs.csv, matching.png, report.html.
    """
    from ..models import labelled_cases, load_model
    from ..sae import check_sae_for_model, load_sae
    from .arch_cases import case_latent_maps

    if max_cases is not None and max_cases < 1:
        raise ParameterError(f"max_cases (--max-cases) must be >= 1, got {max_cases}")
    settings = settings or ArchDiffSettings()
    command = command or _call(
        "architecture_study",
        model_a_dir,
        sae_a_dir,
        model_b_dir,
        sae_b_dir,
        list(map(str, data)),
        out_dir,
        populations=populations,
        max_cases=max_cases,
        settings=settings,
    )
    with atomic_directory(out_dir, overwrite=overwrite) as folder:  # refuses an existing folder before any work
        model_a, model_b = load_model(model_a_dir, device="cpu"), load_model(model_b_dir, device="cpu")
        sae_a, sae_b = load_sae(sae_a_dir), load_sae(sae_b_dir)
        check_sae_for_model(sae_a, sae_a_dir, model_a)
        check_sae_for_model(sae_b, sae_b_dir, model_b)
        cases = labelled_cases(data, populations)[:max_cases]
        names_a, names_b = labels_for(sae_a_dir, labels_a), labels_for(sae_b_dir, labels_b)
        study = ArchitectureDiff(sae_a.n_latents, sae_b.n_latents, settings)
        for number, files in enumerate(cases):
            study.add_case(case_latent_maps(files.load(), model_a, sae_a, model_b, sae_b, precision))
            progress("cases (both networks)", number + 1, len(cases))
        result = study.result(progress=lambda done, total: progress("permutation null", done, total))
        names = (model_a.config.architecture, model_b.config.architecture)
        if names[0] == names[1]:
            names = (Path(model_a_dir).name, Path(model_b_dir).name)
        used = sorted({c.population for c in cases})
        described = (
            f"{len(cases)} cases of {', '.join(map(str, data))} ({', '.join(used)}); {names[0]}: model "
            f"{model_a.fingerprint[:12]}, {describe_sae(sae_a_dir, sae_a)}; {names[1]}: model "
            f"{model_b.fingerprint[:12]}, {describe_sae(sae_b_dir, sae_b)}"
        )
        return write_architecture_outputs(result, folder, described, command, names_a, names_b, names)
