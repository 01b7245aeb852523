"""Default SAE layer and size per backbone architecture.

U-Net: the 1/2-resolution decoder block (`model.1.submodule.2`), not the
bottleneck. `bench/sae_layers.py` shows that MONAI's U-Net hardly depends on its
bottleneck (zeroing it costs 0.001 Dice: the skip connections carry the output),
so latents there can describe the tumour but not change the segmentation;
zeroing decoder 1 costs 0.61 Dice, its SAEs recover the Dice fully, and the
steering study recovers failures there with 128 latents, k = 8 (docs/sae.md
"Which layer?", docs/steering.md). SegFormer: encoder stage 4, kept for now
although its rows hold little structure (7 principal components carry 99 % of the
variance: 81-96 % of the latents dead on held-out rows at every size 32-1024 and
learning rate tried) and zeroing it costs ≤ 0.001 Dice; the decoder's fused
features look better (docs/sae.md "On the demo's SegFormer rows") but are not
measured enough to switch. Other
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
    "segformer": LayerDefault("stages.3", "encoder stage 4", 1024, 16, "batchtopk"),
}


def default_for(model: SegmentationModel) -> LayerDefault:
    """The default layer and SAE size of the model's architecture."""
    architecture = model.config.architecture
    if architecture not in DEFAULTS:
        raise ParameterError(
            f"no default SAE layer for architecture {architecture!r}; pass --layer "
            "(see `medseglens layers --model MODEL_DIR`)"
        )
    return DEFAULTS[architecture]
