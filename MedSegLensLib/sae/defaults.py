"""Default SAE layer and size per backbone architecture.

The U-Net default is its bottleneck (a compact code that describes the tumour
well), but `bench/sae_layers.py` shows the network hardly depends on it (zeroing
it costs 0.001 Dice: the skip connections carry the output), so steer at the
1/2-resolution decoder (`model.1.submodule.2`) instead; see "Which layer?" in
docs/sae.md. Other architectures have no default: name the layer (`medseglens
layers --model MODEL_DIR` lists them).
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
    "unet": LayerDefault("model.1.submodule.1.submodule.1.submodule", "bottleneck", 1024, 16, "batchtopk"),
    "segformer": LayerDefault("stages.3", "encoder stage 4", 1024, 16, "batchtopk"),
}


def default_for(model: SegmentationModel) -> LayerDefault:
    """The default layer and SAE size of the model's architecture."""
    architecture = model.config.architecture
    if architecture not in DEFAULTS:
        raise ParameterError(f"no default SAE layer for architecture {architecture!r}; pass --layer "
                             "(see `medseglens layers --model MODEL_DIR`)")
    return DEFAULTS[architecture]
