"""Opening a steering session from folders: model, SAE (hash-checked) and its latents' typical activations."""

from __future__ import annotations

from pathlib import Path

from ..data import Case
from ..errors import ParameterError
from ..models.inference import SegmentationModel, load_model
from ..sae import check_sae_for_model, load_sae
from ..steering_contract import SteeringSpec
from .scales import SCALES_FILE, latent_scales_for, sae_sha256
from .session import SteeringSession


def open_session(
    model: SegmentationModel | str | Path,
    sae_dir: str | Path,
    case: Case,
    layer: str | None = None,
    device=None,
    spec: SteeringSpec | None = None,
) -> SteeringSession:
    """A session on the SAE's layer (or `layer`) with the latents' typical activations (stored or measured).

    The SAE is checked against the model first; with `spec`, its latents are checked against the SAE,
    all before the (costly) first pass.
    """
    sae = load_sae(sae_dir)
    if not isinstance(model, SegmentationModel):
        model = load_model(model, device=device)
    layer = check_sae_for_model(sae, sae_dir, model, layer)
    sha = sae_sha256(sae_dir)
    scales = latent_scales_for(sae_dir, sae, sha)
    if spec is not None:
        spec.check_latents(sae.n_latents)
        if spec.mode in ("additive", "clamp"):
            if scales is None:
                raise ParameterError(
                    f"{spec.mode} steering needs {Path(sae_dir) / SCALES_FILE}: measure it with "
                    "`medseglens steer-scales --sae SAE_DIR --store STORE_DIR`"
                )
            scales.of(spec.latents)
    return SteeringSession(model, sae, case, layer, scales=scales, sae_sha256=sha)
