"""The `segment` job: a model folder plus a case -> a segmentation file in the input's geometry.

params: {"model": MODEL_FOLDER, "case": CASE_FOLDER | {"t1n": FILE, "t1c": ..., "t2w": ..., "t2f": ...},
         "case_id": optional name}
result: {"segmentation": FILE, "case_id": ..., "label_voxels": {"1": n, "2": n, "3": n},
         "model": {"fingerprint": weights sha256, "architecture": ...}}
The model and the case stay cached in the worker, so a second request on the
same files skips loading.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError
from ..pause_points import pause_point
from .registry import JobContext, JobRegistry, folder_fingerprint


def load_case_param(value: Any, case_id: str | None = None):
    """A `Case` from a BraTS case folder or a {modality: file} mapping."""
    from ..data import MODALITIES, load_case, read_case

    if isinstance(value, str):
        return read_case(value, with_labels=False)
    if isinstance(value, dict):
        files = {m: value[m] for m in MODALITIES if m in value}
        return load_case(files, case_id=case_id)
    raise ParameterError("'case' must be a case folder or an object mapping t1n, t1c, t2w, t2f to files")


def case_fingerprint(value: Any) -> tuple:
    if isinstance(value, dict):
        return tuple(sorted((k, folder_fingerprint(v)) for k, v in value.items() if isinstance(v, str)))
    return folder_fingerprint(str(value))


def require(params: dict[str, Any], name: str) -> Any:
    if params.get(name) in (None, ""):
        raise ParameterError(f"the job needs the parameter {name!r}")
    return params[name]


def segment(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    model_dir = str(require(params, "model"))
    case_value = require(params, "case")
    from ..models import load_model

    ctx.progress(0.05, "loading the model")
    model = ctx.cache.get_or_create("model", folder_fingerprint(model_dir), lambda: load_model(model_dir))
    ctx.progress(0.25, "reading the case")
    case = ctx.cache.get_or_create(
        "case", case_fingerprint(case_value), lambda: load_case_param(case_value, params.get("case_id"))
    )
    ctx.progress(0.45, "running the model")
    pause_point("job:segment")
    prediction = model.predict(case)
    labels = np.asarray(prediction.labels, dtype=np.uint8)
    ctx.progress(0.9, "writing the segmentation")
    path = case.write_like_input(labels, ctx.output_path("segmentation.nii.gz"), dtype=np.uint8)
    values, counts = np.unique(labels, return_counts=True)
    ctx.progress(1.0, "done")
    return {
        "segmentation": str(path),
        "case_id": case.case_id,
        "label_voxels": {str(int(v)): int(c) for v, c in zip(values, counts) if v != 0},
        "model": {"fingerprint": prediction.model_fingerprint, "architecture": model.config.architecture},
    }


def register(registry: JobRegistry) -> None:
    registry.add("segment", segment)
