"""The named layers of a network that can be hooked, with their output shapes.

Shapes are measured, not computed: one forward pass of a zero patch with a
forward hook on every module. The default listing is the network's blocks
(encoder stages, bottleneck, decoder stages, head) with a readable role;
`all_layers=True` lists every module whose output is a 5D map.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from monai.networks.layers import SkipConnection
from monai.networks.nets import UNet
from torch import nn

from .segformer import SegFormer3D

# Modules that only rescale or gate their input: listed with all_layers only.
_ELEMENTWISE = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.Dropout,
    nn.ReLU,
    nn.PReLU,
    nn.GELU,
    nn.LeakyReLU,
    nn.Identity,
)


@dataclass
class LayerInfo:
    """A hookable layer: module name, role, output shape (without batch), channels, stride vs the input."""

    name: str
    role: str
    shape: tuple[int, ...]
    channels: int
    stride: tuple[int, int, int]

    def to_json(self) -> dict:
        data = asdict(self)
        data["shape"], data["stride"] = list(self.shape), list(self.stride)
        return data


def _unet_blocks(network: UNet) -> Iterator[tuple[str, str]]:
    """(name, role) of MONAI UNet's encoder blocks, bottleneck and decoder blocks, shallow to deep to shallow."""
    prefix, layer, level, ups = "model", network.model, 0, []
    while isinstance(layer, nn.Sequential) and len(layer) == 3 and isinstance(layer[1], SkipConnection):
        yield f"{prefix}.0", f"encoder {level}"
        ups.append((f"{prefix}.2", level))
        prefix, layer, level = f"{prefix}.1.submodule", layer[1].submodule, level + 1
    yield prefix, "bottleneck"
    for name, up_level in reversed(ups):
        yield name, "head (logits)" if up_level == 0 else f"decoder {up_level}"


def _segformer_blocks(network: SegFormer3D) -> Iterator[tuple[str, str]]:
    for index, stage in enumerate(network.stages):
        for block in range(len(stage.blocks)):
            yield f"stages.{index}.blocks.{block}", f"encoder stage {index + 1} block {block + 1}"
        yield f"stages.{index}", f"encoder stage {index + 1}"
    yield "decoder.fuse_act", "decoder fused features"
    yield "decoder", "head (logits)"


def block_names(network: nn.Module) -> list[tuple[str, str]] | None:
    """The curated (name, role) list for the project's backbones; None for other networks."""
    if isinstance(network, SegFormer3D):
        return list(_segformer_blocks(network))
    if isinstance(network, UNet):
        return list(_unet_blocks(network))
    return None


def _measure(network: nn.Module, names: list[str], in_channels: int, patch_size: Sequence[int]) -> dict[str, tuple]:
    """Output shapes (without batch) of the named modules for one zero patch, in the order they ran."""
    shapes: dict[str, tuple] = {}
    modules = dict(network.named_modules())
    handles = []
    for name in names:

        def hook(_module, _inputs, output, name=name):
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape[1:])

        handles.append(modules[name].register_forward_hook(hook))
    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            network(torch.zeros(1, in_channels, *patch_size, device=device))
    finally:
        network.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes


def hookable_layers(
    model_or_network,
    patch_size: Sequence[int] | None = None,
    in_channels: int | None = None,
    all_layers: bool = False,
) -> list[LayerInfo]:
    """Layers with a spatial (C, X, Y, Z) output, in forward order, for a patch of `patch_size`.

    Accepts a `SegmentationModel` (patch size and channels come from its config)
    or a bare network (give `patch_size`; `in_channels` defaults to 4).
    """
    config = getattr(model_or_network, "config", None)
    network = getattr(model_or_network, "network", model_or_network)
    patch = tuple(patch_size or (config.patch_size if config else ()))
    if len(patch) != 3:
        raise ValueError("hookable_layers needs a 3D patch_size for a bare network")
    channels_in = in_channels or (config.in_channels if config else 4)
    # a model may name its own blocks (imported models do); otherwise the project's backbones are recognised
    roles_of_model = getattr(model_or_network, "layer_roles", None)
    curated = None if all_layers else (roles_of_model() if roles_of_model else block_names(network))
    if curated is None:
        candidates = [
            (name, type(module).__name__)
            for name, module in network.named_modules()
            if name and (all_layers or not isinstance(module, _ELEMENTWISE))
        ]
    else:
        candidates = curated
    roles = dict(candidates)
    shapes = _measure(network, list(roles), channels_in, patch)
    layers = []
    for name, shape in shapes.items():  # in the order the forward pass produced them
        if len(shape) != 4:
            continue
        stride = tuple(max(1, round(p / s)) for p, s in zip(patch, shape[1:]))
        layers.append(LayerInfo(name, roles[name], shape, int(shape[0]), stride))
    return layers
