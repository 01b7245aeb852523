"""Fill an activation store from a backbone's layer over a cohort, resumably.

For each case: one sliding-window pass with the layer hooked (`capture`), then
stratified rows (`feature_rows`: quotas per tumour subregion, tissue class and
background, never only uniform) with the case id, population, image voxel
coordinates, label and tissue class, appended to the store and committed. A rerun
with `resume=True` skips every committed case; the voxels a case contributes
depend only on (seed, case id), so the order of cases does not matter.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..data import Case, CaseFiles
from ..errors import CompatibilityError
from ..models.inference import SegmentationModel
from ..pause_points import pause_point
from .capture import FeatureMap, layer_channels, layer_feature_maps
from .feature_rows import FeatureRows, sample_feature_map
from .store import MANIFEST, ActivationStore, StoreWriter
from .strata import DEFAULT_QUOTAS

ExtractProgress = Callable[[int, int, str, bool], None]  # (cases done, total, case id, skipped)


def case_seed(seed: int, case_id: str) -> int:
    """The sampling seed of one case: depends on the run's seed and the case id only."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(case_id.encode())]).generate_state(1)[0])


def brain_mask(case: Case) -> np.ndarray:
    """Voxels where any modality is non-zero (skull-stripped inputs are zero outside the brain)."""
    return np.any(case.image != 0, axis=0)


def sample_case_rows(fmap: FeatureMap, case: Case, quotas: Mapping[str, int] | None, seed: int) -> FeatureRows:
    """Stratified rows of a case's layer map, each with its case-grid voxel, label and tissue class."""
    return sample_feature_map(
        fmap.features,
        case.grid.shape,
        case.label,
        case.tissue,
        brain_mask(case),
        quotas=quotas,
        seed=case_seed(seed, case.case_id),
        coords=fmap.case_voxels(),
    )


def store_info(model: SegmentationModel, layer: str, quotas: Mapping[str, int], seed: int) -> dict:
    """What a store holds; a resumed capture must match it exactly."""
    return {
        "model_fingerprint": model.fingerprint,
        "architecture": model.config.architecture,
        "layer": layer,
        "quotas": dict(quotas),
        "seed": int(seed),
    }


def check_store_for(store: ActivationStore, model: SegmentationModel, layer: str) -> None:
    """Refuse a store captured from another model or layer."""
    info = store.info
    if info.get("model_fingerprint") != model.fingerprint:
        raise CompatibilityError(
            f"{store.path}: activations come from model {str(info.get('model_fingerprint'))[:12]}, not "
            f"{model.fingerprint[:12]}; capture a new store for this model"
        )
    if info.get("layer") != layer:
        raise CompatibilityError(
            f"{store.path}: activations come from layer {info.get('layer')!r}, not {layer!r}; "
            "capture a new store or pass the store's layer"
        )


def complete_store(path: str | os.PathLike) -> ActivationStore | None:
    """The store at `path` if it exists and its capture finished, else None."""
    if not (Path(path) / MANIFEST).exists():
        return None
    store = ActivationStore(path, allow_incomplete=True)
    return store if store.manifest["state"] == "complete" else None


def extract_activations(
    model: SegmentationModel,
    layer: str,
    cases: Sequence[CaseFiles],
    store_dir: str | os.PathLike,
    quotas: Mapping[str, int] | None = None,
    seed: int = 0,
    progress: ExtractProgress | None = None,
    **options,
) -> ActivationStore:
    """Capture stratified activation rows of `layer` for every case into `store_dir` and return the store.

    `options`: resume, overwrite, dtype, precision (as for `extract_layers`).
    """
    return extract_layers(model, {layer: store_dir}, cases, quotas, seed, progress, **options)[layer]


def extract_layers(
    model: SegmentationModel,
    stores: Mapping[str, str | os.PathLike],
    cases: Sequence[CaseFiles],
    quotas: Mapping[str, int] | None = None,
    seed: int = 0,
    progress: ExtractProgress | None = None,
    resume: bool = False,
    overwrite: bool = False,
    dtype: str = "float16",
    precision: str = "fp32",
) -> dict[str, ActivationStore]:
    """Several layers at once (one store each, one sliding-window pass per case for all of them)."""
    quotas = dict(DEFAULT_QUOTAS if quotas is None else quotas)
    writers = {
        layer: StoreWriter(
            path,
            layer_channels(model, layer),
            dtype=dtype,
            info=store_info(model, layer, quotas, seed),
            resume=resume,
            overwrite=overwrite,
        )
        for layer, path in stores.items()
    }
    for index, files in enumerate(cases):
        todo = [layer for layer, writer in writers.items() if files.case_id not in writer.done_case_ids]
        if todo:
            case = files.load()
            for layer, fmap in layer_feature_maps(model, case, todo, precision).items():
                rows = sample_case_rows(fmap, case, quotas, seed)
                writer = writers[layer]
                writer.add_case(
                    case.case_id, case.population, rows.activations, rows.coords, rows.label, rows.tissue, rows.stratum
                )
                writer.flush()  # commit each finished case: a rerun continues with the next one
            pause_point(f"extract:case-{index + 1}")
        if progress is not None:
            progress(index + 1, len(cases), files.case_id, not todo)
    return {layer: writer.close() for layer, writer in writers.items()}
