"""Default SAE layer and size per backbone architecture.

U-Net: the 1/2-resolution decoder block (`model.1.submodule.2`), not the
bottleneck. `bench/sae_layers.py` shows that MONAI's U-Net hardly depends on its
bottleneck (zeroing it costs 0.001 Dice: the skip connections carry the output),
so latents there can describe the tumour but not change the segmentation;
zeroing decoder 1 costs 0.61 Dice, its SAEs recover the Dice fully, and the
steering study recovers failures there with 128 latents, k = 8 (docs/sae.md
"Which layer?", docs/steering.md). SegFormer: the decoder's fused features
(`decoder.fuse_act`, the head's input, 64 channels at stride 2), 256 latents,
k = 32, picked by the rule in docs/sae.md ("Fixed k at `decoder.fuse_act`"): the
largest dictionary with <= 5 % dead latents on held-out rows and voxels (two
seeds: 1.6 % / <= 1.2 %), FVU 0.011-0.012, Dice recovered 1.00. Encoder stage 4
(`stages.3`, the earlier default) is 81-96 % dead at every size and rate and the
output barely depends on it (zeroing costs <= 0.001 Dice); zeroing the fused
features leaves no segmentation, and no instance norm follows them, so a
steering edit there updates locally and exactly. Other
architectures have no default: name the layer (`medseglens layers --model
MODEL_DIR` lists them).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ParameterError
from ..models.inference import SegmentationModel


@dataclass(frozen=True)
class LayerDefault:
    layer: str
    role: str
    n_latents: int
    k: int
    kind: str


DEFAULTS: dict[str, LayerDefault] = {
    "unet": LayerDefault("model.1.submodule.2", "decoder 1 (1/2 resolution)", 128, 8, "batchtopk"),
    "segformer": LayerDefault("decoder.fuse_act", "decoder fused features (1/2 resolution)", 256, 32, "batchtopk"),
}


def default_for(model: SegmentationModel) -> LayerDefault:
    """The default layer and SAE size of the model's architecture."""
    return default_for_architecture(model.config.architecture)


def default_for_architecture(architecture: str) -> LayerDefault:
    """The default layer and SAE size of an architecture by name (a refusal names what to pass instead)."""
    if architecture not in DEFAULTS:
        raise ParameterError(
            f"no default SAE layer for architecture {architecture!r}; pass --layer "
            "(see `medseglens layers --model MODEL_DIR`)"
        )
    return DEFAULTS[architecture]
