"""Latent steering: change SAE latents at a layer and re-run only the rest of the network.

    from MedSegLensLib.steering import SteeringSpec, RegionSpec, open_session
    session = open_session("models/unet", "saes/decoder1", case)
    result = session.steer(SteeringSpec((12,), (2.0,), "additive", RegionSpec("tumour-margin", 10)))
    write_steered_segmentation(case, result.prediction.labels, "steered.nii.gz", steering_provenance(session, spec))

See docs/steering.md for the interventions, the caching and its exactness, and the recovery study.
"""

from ..steering_contract import MODES, STRENGTH_RANGES, RegionSpec, SteeringSpec
from .loading import open_session
from .output import (
    read_segmentation_provenance,
    read_sidecar_provenance,
    sidecar_path,
    steering_provenance,
    write_steered_segmentation,
)
from .scales import LatentScales, compute_latent_scales, load_latent_scales, sae_sha256, save_latent_scales
from .session import SteeringResult, SteeringSession

__all__ = [
    "LatentScales",
    "MODES",
    "RegionSpec",
    "STRENGTH_RANGES",
    "SteeringResult",
    "SteeringSession",
    "SteeringSpec",
    "compute_latent_scales",
    "load_latent_scales",
    "open_session",
    "read_segmentation_provenance",
    "read_sidecar_provenance",
    "sae_sha256",
    "save_latent_scales",
    "sidecar_path",
    "steering_provenance",
    "write_steered_segmentation",
]
