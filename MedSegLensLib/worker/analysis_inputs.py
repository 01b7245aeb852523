"""What the latent and steering jobs share: a model, an SAE and a case, loaded once and kept in the cache.

Every request names its inputs again (`model`, `sae`, `case`), so any job can
run first and a restarted worker (after a cancel or a crash) rebuilds what it
needs. The cache keys are fingerprints of the files (path, size, mtime): an
edited model, SAE or input volume is loaded again, an unchanged one is not.
The SAE is keyed by its two weight files only, so files that other tools add
to its folder (`latents.json`, `latent_scales.json`) do not evict it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .registry import JobContext, folder_fingerprint
from .segment_job import case_fingerprint, load_case_param, require


@dataclass
class AnalysisInputs:
    """The loaded inputs of one request and the key naming that combination."""

    model: Any  # models.SegmentationModel
    model_dir: Path
    sae: Any  # sae.SparseAutoencoder, with .info
    sae_dir: Path
    sae_sha256: str
    case: Any  # data.Case
    key: tuple


def sae_fingerprint(sae_dir: str | Path) -> tuple:
    """A cache key for an SAE folder: its weights and sidecar only."""
    from ..sae.io import SIDECAR, WEIGHTS

    folder = Path(sae_dir)
    return (str(folder.resolve()), folder_fingerprint(folder / WEIGHTS), folder_fingerprint(folder / SIDECAR))


def _load_sae(sae_dir: Path) -> tuple[Any, str]:
    from ..sae import load_sae
    from ..steering import sae_sha256

    return load_sae(sae_dir), sae_sha256(sae_dir)


def analysis_inputs(params: dict[str, Any], ctx: JobContext, first: float = 0.0, last: float = 0.3) -> AnalysisInputs:
    """Model, SAE (checked against the model) and case of a request, from the cache when unchanged."""
    from ..models import load_model
    from ..sae import check_sae_for_model

    model_dir, sae_dir = Path(require(params, "model")), Path(require(params, "sae"))
    case_value = require(params, "case")
    step = (last - first) / 3
    ctx.progress(first, "loading the model")
    model_key = folder_fingerprint(model_dir)
    model = ctx.cache.get_or_create("model", model_key, lambda: load_model(model_dir))
    ctx.progress(first + step, "loading the SAE")
    sae_key = sae_fingerprint(sae_dir)
    sae, sha = ctx.cache.get_or_create("sae", sae_key, lambda: _load_sae(sae_dir))
    check_sae_for_model(sae, sae_dir, model)
    ctx.progress(first + 2 * step, "reading the case")
    case_key = case_fingerprint(case_value)
    case = ctx.cache.get_or_create("case", case_key, lambda: load_case_param(case_value, params.get("case_id")))
    ctx.progress(last, "inputs ready")
    return AnalysisInputs(model, model_dir, sae, sae_dir, sha, case, (model_key, sae_key, case_key))
