"""3D convolutions on the CPU through oneDNN, whatever their size.

PyTorch sends a float32 CPU convolution with a kernel of at most 3 to its native im2col kernel when
batch x channels x depth x height <= 20480 (`use_mkldnn` in aten/src/ATen/native/Convolution.cpp, a
rule tuned for 2D images). The windows of our 3D networks fall under it at batch 1 and in the deep
layers, where the native kernel is much slower than oneDNN: routed, the U-Net segments 3.5-6.4x faster
at one window per batch (`bench/conv3d_backends.py --batch 1`). Routing those calls to oneDNN changes
results only by float rounding. Pointwise (1x1x1) convolutions keep
PyTorch's choice (its native kernel is the faster one on one thread), and so does everything but
inference: with gradients on, or off the CPU, or in another dtype, the convolution runs as PyTorch chooses.
"""

from __future__ import annotations

import torch
from torch import nn


class OneDNNConv3d(nn.Conv3d):
    """A Conv3d whose CPU float32 inference always runs oneDNN's kernel."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            input.device.type != "cpu"
            or input.dtype != torch.float32
            or weight.dtype != torch.float32
            or torch.is_grad_enabled()
            or self.padding_mode != "zeros"
            or isinstance(self.padding, str)
            or self.kernel_size == (1, 1, 1)
        ):
            return super()._conv_forward(input, weight, bias)
        return torch.ops.aten.mkldnn_convolution(
            input.contiguous(), weight.contiguous(), bias, self.padding, self.stride, self.dilation, self.groups
        )


def route_conv3d_to_onednn(network: nn.Module) -> nn.Module:
    """Make every plain Conv3d of `network` an OneDNNConv3d (same parameters and state dict), in place."""
    if not torch.backends.mkldnn.is_available():
        return network
    for module in network.modules():
        if type(module) is nn.Conv3d:
            module.__class__ = OneDNNConv3d
    return network
