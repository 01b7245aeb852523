"""A 3D SegFormer (Xie et al., 2021), as adapted to volumes by SegFormer3D.

The design, kept faithfully:
- a hierarchical encoder of four stages; each stage starts with an overlapping
  patch embedding (a strided convolution whose kernel is larger than its
  stride) followed by transformer blocks and a LayerNorm;
- efficient self-attention: keys and values come from a copy of the tokens
  shrunk by a strided convolution (spatial-reduction ratio R per axis), so the
  cost is N x N/R^3 instead of N x N;
- Mix-FFN: Linear, a depthwise 3x3x3 convolution (which gives the positional
  information instead of position embeddings), GELU, Linear;
- an all-MLP decoder: each stage's features are projected to one width,
  upsampled to the first stage's resolution, concatenated, fused by a linear
  layer and classified; the logits are upsampled to the input resolution.

Every stage and block takes and returns channels-first maps (B, C, D, H, W), so
each one is a hookable layer with a spatial output, and the whole network is
traceable by `torch.fx` (no data-dependent control flow).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, D, H, W) map, at every voxel."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class OverlapPatchEmbed(nn.Module):
    """Strided convolution with kernel > stride, so neighbouring patches overlap."""

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=kernel, stride=stride, padding=kernel // 2)
        self.norm = ChannelLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


def tokens_of(x: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, D*H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def map_of(tokens: torch.Tensor, like: torch.Size) -> torch.Tensor:
    """(B, N, C') -> (B, C', D, H, W) with the spatial size of `like`."""
    return tokens.transpose(1, 2).reshape(like[0], -1, like[2], like[3], like[4])


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced copy."""

    def __init__(self, dim: int, heads: int, sr_ratio: int):
        super().__init__()
        if sr_ratio > 1:
            self.reduce = nn.Conv3d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.reduce_norm = nn.LayerNorm(dim)
        else:
            self.reduce = None
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, tokens: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        if self.reduce is None:
            context = tokens
        else:
            context = self.reduce_norm(tokens_of(self.reduce(map_of(tokens, shape))))
        out, _ = self.attention(tokens, context, context, need_weights=False)
        return out


class MixFFN(nn.Module):
    """Linear -> depthwise 3x3x3 conv -> GELU -> Linear."""

    def __init__(self, dim: int, ratio: int):
        super().__init__()
        hidden = dim * ratio
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv3d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, tokens: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        hidden = tokens_of(self.dwconv(map_of(self.fc1(tokens), shape)))
        return self.fc2(self.act(hidden))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + MixFFN(norm(x))."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MixFFN(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = tokens_of(x)
        tokens = tokens + self.attn(self.norm1(tokens), shape)
        tokens = tokens + self.ffn(self.norm2(tokens), shape)
        return map_of(tokens, shape)


class EncoderStage(nn.Module):
    """Overlapping patch embedding, transformer blocks, LayerNorm."""

    def __init__(
        self,
        in_channels: int,
        dim: int,
        kernel: int,
        stride: int,
        depth: int,
        heads: int,
        sr_ratio: int,
        mlp_ratio: int,
    ):
        super().__init__()
        self.embed = OverlapPatchEmbed(in_channels, dim, kernel, stride)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, sr_ratio, mlp_ratio) for _ in range(depth)])
        self.norm = ChannelLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.embed(x)))


class AllMLPDecoder(nn.Module):
    """Project each scale to `dim` (Linear), upsample to the finest scale, concatenate, fuse (Linear), classify."""

    def __init__(self, dims: Sequence[int], dim: int, out_channels: int, scales: Sequence[int], output_scale: int):
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(d, dim) for d in dims)
        self.upsample = nn.ModuleList(
            nn.Identity() if s == 1 else nn.Upsample(scale_factor=s, mode="trilinear", align_corners=False)
            for s in scales
        )
        self.fuse = nn.Linear(dim * len(dims), dim, bias=False)
        self.fuse_norm = nn.InstanceNorm3d(dim, affine=True)
        self.fuse_act = nn.ReLU()
        self.head = nn.Linear(dim, out_channels)
        self.output_upsample = nn.Upsample(scale_factor=output_scale, mode="trilinear", align_corners=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        projected = [
            up(map_of(proj(tokens_of(f)), f.shape)) for f, proj, up in zip(features, self.project, self.upsample)
        ]
        # deepest scale first, as in SegFormer's reference decoder
        stacked = torch.cat(projected[::-1], dim=1)
        fused = self.fuse_act(self.fuse_norm(map_of(self.fuse(tokens_of(stacked)), stacked.shape)))
        logits = map_of(self.head(tokens_of(fused)), fused.shape)
        return self.output_upsample(logits)


class SegFormer3D(nn.Module):
    """Hierarchical transformer encoder + all-MLP decoder for 3D segmentation.

    Input sizes must be multiples of the product of `patch_strides` (e.g. 16 or 32).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embed_dims: Sequence[int] = (32, 64, 160, 256),
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        patch_kernels: Sequence[int] = (7, 3, 3, 3),
        patch_strides: Sequence[int] = (4, 2, 2, 2),
        sr_ratios: Sequence[int] = (4, 2, 1, 1),
        mlp_ratio: int = 4,
        decoder_dim: int = 256,
    ):
        super().__init__()
        lengths = {len(x) for x in (embed_dims, depths, num_heads, patch_kernels, patch_strides, sr_ratios)}
        if lengths != {4}:
            raise ValueError("SegFormer3D needs four values for each per-stage hyper-parameter")
        for dim, heads in zip(embed_dims, num_heads):
            if dim % heads:
                raise ValueError(f"embedding width {dim} is not divisible by {heads} heads")
        for kernel, stride in zip(patch_kernels, patch_strides):
            if kernel <= stride and stride > 1:
                raise ValueError(f"patch kernel {kernel} must exceed its stride {stride} so that patches overlap")
        self.total_stride = 1
        for s in patch_strides:
            self.total_stride *= s
        channels = [in_channels, *embed_dims]
        self.stages = nn.ModuleList(
            EncoderStage(
                channels[i],
                embed_dims[i],
                patch_kernels[i],
                patch_strides[i],
                depths[i],
                num_heads[i],
                sr_ratios[i],
                mlp_ratio,
            )
            for i in range(4)
        )
        scales, scale = [], 1
        for stride in patch_strides[1:]:
            scale *= stride
            scales.append(scale)
        self.decoder = AllMLPDecoder(embed_dims, decoder_dim, out_channels, [1, *scales], patch_strides[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return self.decoder(features)
