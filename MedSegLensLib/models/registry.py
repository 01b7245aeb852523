"""Turning a `ModelConfig` into a network: the project's two backbones or any MONAI network."""

from __future__ import annotations

import inspect

import monai.networks.nets as monai_nets
import torch
from torch import nn

from ..errors import ParameterError
from .config import IMPORTED_PREFIXES, MONAI_PREFIX, ModelConfig
from .segformer import SegFormer3D


def _unet(config: ModelConfig) -> nn.Module:
    params = {"dropout": 0.0, **config.hyper_parameters}
    return monai_nets.UNet(spatial_dims=3, in_channels=config.in_channels, out_channels=config.out_channels, **params)


def _segformer(config: ModelConfig) -> nn.Module:
    return SegFormer3D(in_channels=config.in_channels, out_channels=config.out_channels, **config.hyper_parameters)


def _monai(config: ModelConfig) -> nn.Module:
    name = config.architecture[len(MONAI_PREFIX) :]
    network_class = getattr(monai_nets, name, None)
    if not (inspect.isclass(network_class) and issubclass(network_class, nn.Module)):
        raise ParameterError(
            f"architecture '{config.architecture}': MONAI has no network named '{name}' (see monai.networks.nets)"
        )
    accepted = inspect.signature(network_class).parameters
    params = dict(config.hyper_parameters)
    if "spatial_dims" in accepted:
        params.setdefault("spatial_dims", 3)
    for key in ("in_channels", "out_channels"):
        if key in accepted:
            params[key] = getattr(config, key)
    return network_class(**params)


BUILDERS = {"unet": _unet, "segformer": _segformer}


def build_network(config: ModelConfig) -> nn.Module:
    """A freshly initialised network for `config` (weights come from `load_model`)."""
    if config.architecture.startswith(IMPORTED_PREFIXES):
        raise ParameterError(
            f"architecture '{config.architecture}' is an imported model: load it with load_model, "
            "its network cannot be trained or rebuilt from a config alone"
        )
    builder = _monai if config.architecture.startswith(MONAI_PREFIX) else BUILDERS[config.architecture]
    try:
        return builder(config)
    except (TypeError, ValueError, AssertionError) as exc:
        reason = " ".join(str(exc).split())
        raise ParameterError(f"architecture '{config.architecture}': hyper-parameters rejected ({reason})") from None


def check_patch_size(network: nn.Module, config: ModelConfig) -> None:
    """Refuse a patch size the network cannot process (e.g. not divisible by its strides)."""
    divisor = _size_divisor(network, config)
    bad = [p for p in config.patch_size if p % divisor]
    if bad:
        raise ParameterError(
            f"patch_size {list(config.patch_size)} must be a multiple of {divisor} for {config.architecture}"
        )


def _size_divisor(network: nn.Module, config: ModelConfig) -> int:
    if isinstance(network, SegFormer3D):
        return network.total_stride
    strides = config.hyper_parameters.get("strides")
    divisor = 1
    for stride in strides or ():
        divisor *= int(stride) if not isinstance(stride, (list, tuple)) else int(max(stride))
    return divisor


def count_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def default_device() -> torch.device:
    """A GPU when one is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
