"""Tissue and tumour signal in each modality, in "times white matter" units.

T1 and T2 come from the real templates (their texture and partial volumes).
No package ships FLAIR or post-contrast T1, so they are derived:
FLAIR-like = T2 with the CSF signal suppressed (grey matter stays brighter than
white matter, CSF turns dark); T1c = T1 plus enhancement (vessels in the CSF
spaces, choroid plexus, and the tumour's enhancing rim). Tumour compartments
then replace tissue in proportion to their partial-volume fractions.
"""

from __future__ import annotations

import numpy as np

from ..data.case import MODALITIES
from .anatomy import Anatomy
from .random_fields import smooth_field
from .tumour import Tumour

GREY_T1, GREY_T2 = 0.77, 1.33  # template grey-matter level relative to white matter
CSF_T2 = 2.4  # template CSF level on T2
FLAIR_CSF_SUPPRESSION = 0.85
VESSEL_ENHANCEMENT = 0.6
# Tumour compartment signal per modality (t1n, t1c, t2w, t2f), times white matter.
NECROSIS = {"t1n": 0.45, "t1c": 0.50, "t2w": 2.10, "t2f": 0.95}
SOLID = {"t1n": 0.72, "t1c": 0.80, "t2w": 1.65, "t2f": 1.55}
ENHANCING = {"t1n": 0.78, "t2w": 1.45, "t2f": 1.40}  # t1c: the population's `enhancement`
EDEMA = {"t1n": 0.80, "t1c": 0.80, "t2w": 2.15, "t2f": 2.05}
TEXTURE = 0.08  # relative amplitude of the tumour's internal heterogeneity


def healthy_images(
    rng: np.random.Generator, anatomy: Anatomy, myelination: float, spacing: float
) -> dict[str, np.ndarray]:
    """The four modalities of a tumour-free brain (head included; skull stripping comes last)."""
    immature = (1.0 - myelination) * anatomy.wm
    t1 = anatomy.t1 - immature * (1.0 - GREY_T1)
    t2 = anatomy.t2 + immature * (GREY_T2 - 1.0)
    # free water: the CSF map, or T2 signal above grey matter (the 2009a tissue maps miss some CSF of the 2009c T2)
    water = np.clip((anatomy.t2 - GREY_T2) / (CSF_T2 - GREY_T2), 0.0, 1.0)
    csf_share = np.maximum(np.clip(anatomy.csf / np.maximum(anatomy.brain, 1e-3), 0.0, 1.0), water)
    flair = t2 * (1.0 - FLAIR_CSF_SUPPRESSION * csf_share)
    vessels = np.clip(smooth_field(rng, anatomy.t1.shape, spacing, 5.0) - 1.5, 0.0, None)
    t1c = t1 + VESSEL_ENHANCEMENT * vessels * anatomy.csf
    return {"t1n": t1, "t1c": t1c, "t2w": t2, "t2f": flair}


def add_tumour(
    rng: np.random.Generator,
    images: dict[str, np.ndarray],
    tumour: Tumour,
    enhancement: float,
    edema_contrast: float,
    spacing: float,
) -> None:
    """Blend edema and tumour compartments into `images` in place."""
    weight = np.clip(edema_contrast * tumour.edema, 0.0, 1.0)
    core = tumour.necrosis + tumour.solid + tumour.enhancing
    texture = 1.0 + TEXTURE * smooth_field(rng, core.shape, spacing, 4.0)
    necrosis_flair = rng.uniform(0.6, 1.3)  # protein-rich necrotic fluid is suppressed to a variable degree
    for name in MODALITIES:
        image = images[name]
        image += weight * (EDEMA[name] - image)
        necrosis = necrosis_flair if name == "t2f" else NECROSIS[name]
        enhancing = enhancement if name == "t1c" else ENHANCING[name]
        tumour_signal = (
            tumour.necrosis * necrosis + tumour.solid * SOLID[name] + tumour.enhancing * enhancing
        ) * texture
        images[name] = image * (1.0 - core) + tumour_signal
