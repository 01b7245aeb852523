"""Why is this case on the worklist? A latent's map beside MONAI's GradCAM and occlusion sensitivity, same slices.

    figure = explain_case(model, sae, case, latent=None, out_png="why.png")

All three maps explain the same quantity, the network's mean tumour probability
inside its own predicted tumour, on one crop of the network's patch size centred
on the predicted tumour (the brain's centre when none is predicted):
- the SAE latent's activation (unless one is named, the latent whose activation
  lies most inside the predicted tumour), from the sliding-window pass, on the model grid;
- MONAI `GradCAM` at the SAE's layer;
- MONAI `OcclusionSensitivity` (how much the score drops when a cube is blanked).
The explanations are MONAI's own implementations; this module only chooses the
target, the crop and the slices, and draws them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.visualize import GradCAM, OcclusionSensitivity
from torch import nn

from ..data import Case
from ..errors import ParameterError
from ..fileio import atomic_path
from ..models.inference import SegmentationModel
from ..sae import SparseAutoencoder, encode_features, layer_features
from ..sae.capture import resample_layer_volume


class TumourScore(nn.Module):
    """(B, 1): mean tumour probability (1 - background) of the network inside a fixed mask."""

    def __init__(self, network: nn.Module, mask: torch.Tensor, background: int):
        super().__init__()
        self.network, self.background = network, background
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tumour = 1 - torch.softmax(self.network(x), dim=1)[:, self.background]
        return ((tumour * self.mask).flatten(1).sum(1) / self.mask.sum().clamp_min(1))[:, None]


@dataclass
class Explanation:
    latent: int
    crop: tuple[slice, slice, slice]
    image: np.ndarray  # FLAIR (or the first channel) on the crop
    tumour: np.ndarray
    maps: dict[str, np.ndarray]  # name -> map on the crop
    centre: tuple[int, int, int]


def _crop(centre: np.ndarray, patch: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    starts = [int(np.clip(c - p // 2, 0, max(s - p, 0))) for c, p, s in zip(centre, patch, shape)]
    return tuple(slice(a, a + min(p, s)) for a, p, s in zip(starts, patch, shape))


def _most_enriched_latent(codes, inside: np.ndarray, n_latents: int) -> int:
    """The latent with the largest share of its activation inside the predicted tumour, among those carrying
    at least 1 % of the activation there (all voxels count as inside when nothing is predicted)."""
    voxel, which, value = codes.voxel.numpy(), codes.latent.numpy(), codes.value.numpy()
    where = inside[voxel] if inside.any() else np.ones(len(voxel), bool)
    there = np.bincount(which[where], weights=value[where], minlength=n_latents)
    total = np.bincount(which, weights=value, minlength=n_latents)
    share = np.where(there >= 0.01 * there.sum(), there / np.maximum(total, 1e-12), -1.0)
    return int(np.argmax(share))


def explain_case(
    model: SegmentationModel, sae: SparseAutoencoder, case: Case, latent: int | None = None, mask_size: int = 16
) -> Explanation:
    layer = sae.info.layer
    prepared = model.prepare(case)
    fmap = layer_features(model, prepared, layer)
    codes = encode_features(sae, fmap)
    background = model.config.label_values.index(0) if 0 in model.config.label_values else 0
    tumour = (fmap.logits[0].argmax(0) != background).numpy()
    brain = (prepared.tensor[0].abs().sum(0) > 0).cpu().numpy()
    inside = fmap.values_at_layer(model.to_prediction(fmap.logits, prepared).labels != 0).reshape(-1)
    if latent is None:
        latent = _most_enriched_latent(codes, inside, sae.n_latents)
    elif not 0 <= latent < sae.n_latents:
        raise ParameterError(f"latent {latent} out of range: this SAE has latents 0..{sae.n_latents - 1}")
    latent_map = resample_layer_volume(codes.dense([latent])[0], fmap.grid, fmap.model_grid)

    centre = np.argwhere(tumour if tumour.any() else brain).mean(0).round().astype(int)
    crop = _crop(centre, tuple(model.config.patch_size), tumour.shape)
    x = prepared.tensor[(slice(None), slice(None), *crop)].detach().clone()
    mask = torch.from_numpy(tumour[crop] if tumour[crop].any() else brain[crop])[None]
    scorer = TumourScore(model.network, mask.to(x.device), background).eval()
    with torch.enable_grad():
        cam = GradCAM(nn_module=scorer, target_layers=f"network.{layer}")(x=x, class_idx=0)
    occlusion = OcclusionSensitivity(scorer, mask_size=mask_size, n_batch=4, overlap=0.0, activate=False, verbose=False)
    with torch.no_grad():
        occluded, _ = occlusion(x)
        baseline = float(scorer(x)[0, 0])
    channel = list(model.config.modalities).index("t2f") if "t2f" in model.config.modalities else 0
    local_centre = tuple(int(c - s.start) for c, s in zip(centre, crop))
    return Explanation(
        latent,
        crop,
        x[0, channel].cpu().numpy(),
        tumour[crop],
        {
            f"SAE latent {latent}": latent_map[crop],
            f"MONAI GradCAM ({layer})": cam[0, 0].detach().cpu().numpy(),
            "MONAI occlusion (score drop)": baseline - occluded[0, 0].cpu().numpy(),
        },
        local_centre,
    )


def save_explanation(explanation: Explanation, path: str | os.PathLike, title: str = "") -> Path:
    """One PNG: a row per map, columns axial, coronal, sagittal through the same voxel, predicted outline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i, j, k = explanation.centre
    views = {"axial": (slice(None), slice(None), k), "coronal": (slice(None), j, slice(None)), "sagittal": (i,)}
    rows = len(explanation.maps)
    figure, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows), squeeze=False)
    for row, (name, volume) in enumerate(explanation.maps.items()):
        for column, (view, index) in enumerate(views.items()):
            axis = axes[row][column]
            axis.imshow(np.rot90(explanation.image[index]), cmap="gray")
            shown = np.rot90(volume[index])
            floor = np.percentile(volume, 50)
            floor = floor if floor < volume.max() else volume.min() - 1  # a flat map is shown, not hidden
            axis.imshow(np.ma.masked_less_equal(shown, floor), cmap="hot", alpha=0.6)
            axis.contour(np.rot90(explanation.tumour[index].astype(float)), levels=[0.5], colors="cyan", linewidths=0.8)
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(f"{name}\n{view}" if column == 0 else view, fontsize=8)
    figure.suptitle(title or "Why this case: latent, GradCAM and occlusion on the same slices", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=90, format="png")
    plt.close(figure)
    return path
