"""Run two networks with their SAEs on one case and collect what architecture diffing needs."""

from __future__ import annotations

import numpy as np

from ..data import Case
from ..models.inference import SegmentationModel
from ..sae.encode import encode_case
from ..sae.extract import brain_mask
from ..sae.model import SparseAutoencoder
from ..sae.strata import voxel_strata
from .architectures import CaseLatentMaps


def case_strata(case: Case) -> np.ndarray:
    """Stratum of every case-grid voxel, as capture assigns them: tumour label, tissue class, brain, background."""
    return voxel_strata(case.label, case.tissue, brain_mask(case))


def case_latent_maps(
    case: Case,
    model_a: SegmentationModel,
    sae_a: SparseAutoencoder,
    model_b: SegmentationModel,
    sae_b: SparseAutoencoder,
    precision: str = "fp32",
) -> CaseLatentMaps:
    """Both networks' sparse codes on `case` (each SAE at its own layer, checked against its model)."""
    codes_a = encode_case(model_a, sae_a, case, precision=precision)
    codes_b = encode_case(model_b, sae_b, case, precision=precision)
    return CaseLatentMaps.from_codes(codes_a, codes_b, case_strata(case), case.population)
