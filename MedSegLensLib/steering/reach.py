"""Exact region-limited recomputation: re-run the suffix only on the crop a steering change can reach.

When nothing after the hooked layer mixes a window's voxels globally (no instance
or group norm, no attention, no global pooling), a change of the layer output at
layer voxels [lo, hi) changes the output only where the suffix's receptive field
reaches: layer coordinates [lo - R, hi + R) (output voxel o sits on layer
coordinate o // scale). Running the suffix on the layer output cropped to
[lo - 2R, hi + 2R) gives exactly the full window's values inside [lo - R, hi + R):
the crop's own edge effects (zero padding, interpolation clamping) act like a
change outside the crop and reach at most R inwards. Those values are pasted into
the cached window logits; everything else in the window is unchanged by definition.

The reach R is *measured by impulses*, not derived from the graph: the suffixes
mix reshapes, per-voxel Linear layers on token lists and trilinear upsampling,
which a graph walk cannot bound in general, while an impulse measures what the
network actually does. To be safe against an impulse that a ReLU happens to stop,
R is the largest reach of several random impulses plus one layer voxel, graphs
with a known global operation are refused outright, and the whole scheme is
checked once per session on a crop of the first window against the full window
(any difference disables it: the session then recomputes whole windows).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

_GLOBAL_MODULES = (
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.MultiheadAttention,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_GLOBAL_FUNCTIONS = {
    F.instance_norm,
    F.group_norm,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool3d,
    F.scaled_dot_product_attention,
    torch.mean,
    torch.sum,
    torch.softmax,
    F.softmax,
    torch.matmul,
    torch.bmm,
    operator.matmul,
}
_GLOBAL_METHODS = {"mean", "sum", "softmax", "var", "std", "max", "min", "matmul", "bmm"}


def has_global_operation(module: fx.GraphModule) -> bool:
    """True when the graph holds an operation known to mix all voxels of a window (norms, attention, pooling)."""
    modules = dict(module.named_modules())
    for node in module.graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(str(node.target)), _GLOBAL_MODULES):
            return True
        if node.op == "call_function" and node.target in _GLOBAL_FUNCTIONS:
            return True
        if node.op == "call_method" and node.target in _GLOBAL_METHODS:
            return True
    return False


@dataclass(frozen=True)
class Reach:
    """Output voxels per layer voxel (`scale`) and how many layer voxels a change reaches (`radius`), per axis."""

    scale: tuple[int, ...]
    radius: tuple[int, ...]
    boundary_scales: tuple[tuple[int, ...] | None, ...]  # per boundary value: its voxels per layer voxel, or None

    def boxes(self, low: Sequence[int], high: Sequence[int], spatial: Sequence[int]):
        """(crop, paste) slices in layer voxels for a change at [low, high); None when the crop is the whole window."""
        crop = [slice(max(0, lo - 2 * r), min(n, hi + 2 * r)) for lo, hi, r, n in zip(low, high, self.radius, spatial)]
        if all(c.start == 0 and c.stop == n for c, n in zip(crop, spatial)):
            return None
        paste = [slice(max(0, lo - r), min(n, hi + r)) for lo, hi, r, n in zip(low, high, self.radius, spatial)]
        return crop, paste


def _scale_of(size: Sequence[int], layer: Sequence[int]) -> tuple[int, ...] | None:
    scale = tuple(int(s) // int(n) for s, n in zip(size, layer))
    return scale if all(s >= 1 and s * n == int(m) for s, n, m in zip(scale, layer, size)) else None


def _boundary_scales(boundary: tuple, h: torch.Tensor) -> tuple | None:
    """Each boundary value's spatial scale against h (None for a non-spatial tensor); None when one is not croppable."""
    scales = []
    for value in boundary:
        if not isinstance(value, torch.Tensor):
            return None  # a shape or number recorded before the layer would not follow a crop
        if value.ndim != h.ndim:
            scales.append(None)
            continue
        scale = _scale_of(value.shape[2:], h.shape[2:])
        if scale is None:
            return None
        scales.append(scale)
    return tuple(scales)


def measure_reach(suffix: fx.GraphModule, h: torch.Tensor, boundary: tuple, seed: int = 0) -> Reach | None:
    """The suffix's reach, measured by random impulses on one window (h: (1, C, ...)); None when it is not local."""
    if has_global_operation(suffix):
        return None
    boundary_scales = _boundary_scales(boundary, h)
    if boundary_scales is None:
        return None
    spatial = tuple(h.shape[2:])
    if min(spatial) < 4:
        return None
    base = suffix(h, *boundary)
    scale = _scale_of(base.shape[2:], spatial)
    if scale is None:
        return None
    generator = torch.Generator().manual_seed(seed)
    amplitude = float(h.std()) * 4 + 1.0
    radius = [0] * len(spatial)
    for fraction in (0.5, 0.3, 0.7):
        point = tuple(int(n * fraction) for n in spatial)
        pushed = h.clone()
        pushed[(0, slice(None), *point)] += amplitude * torch.randn(h.shape[1], generator=generator)
        moved = (suffix(pushed, *boundary) - base)[0].abs().amax(0).nonzero()
        if not len(moved):
            continue
        for axis in range(len(spatial)):
            where = torch.div(moved[:, axis], scale[axis], rounding_mode="floor") - point[axis]
            radius[axis] = max(radius[axis], int(where.abs().max()))
    radius = tuple(r + 1 for r in radius)  # one layer voxel of safety against an impulse a ReLU happened to stop
    if any(2 * r + 1 >= n for r, n in zip(radius, spatial)):
        return None  # reaches (nearly) the whole window: not local, or no gain
    reach = Reach(scale, radius, boundary_scales)
    return reach if _crop_matches(suffix, reach, h, boundary, base) else None


def _crop_matches(suffix: fx.GraphModule, reach: Reach, h: torch.Tensor, boundary: tuple, base: torch.Tensor) -> bool:
    """One crop of the window, recomputed, equals the full window where it is pasted (to float rounding)."""
    spatial = tuple(h.shape[2:])
    low = [n // 3 for n in spatial]
    high = [lo + 1 for lo in low]
    boxes = reach.boxes(low, high, spatial)
    if boxes is None:
        return False
    out = base.clone()
    paste_into(out, 0, suffix, reach, h, boundary, *boxes)
    scale = max(1.0, float(base.abs().max()))
    return bool((out - base).abs().max() <= 1e-5 * scale)


def crop_boundary(boundary: tuple, reach: Reach, crop: Sequence[slice], b: int) -> tuple:
    """Boundary values of window b cut to the crop (each at its own scale)."""
    out = []
    for value, scale in zip(boundary, reach.boundary_scales):
        if scale is None:
            out.append(value[b : b + 1] if isinstance(value, torch.Tensor) and value.ndim else value)
        else:
            cut = tuple(slice(c.start * s, c.stop * s) for c, s in zip(crop, scale))
            out.append(value[b : b + 1][(slice(None), slice(None), *cut)].contiguous())
    return tuple(out)


def paste_into(
    out: torch.Tensor,
    b: int,
    suffix: fx.GraphModule,
    reach: Reach,
    h: torch.Tensor,
    boundary: tuple,
    crop: Sequence[slice],
    paste: Sequence[slice],
) -> None:
    """Run the suffix on window b's (steered) layer output cut to `crop` and paste its `paste` part into out[b]."""
    cut = h[b : b + 1][(slice(None), slice(None), *crop)].contiguous()
    result = suffix(cut, *crop_boundary(boundary, reach, crop, b))
    target = tuple(slice(p.start * s, p.stop * s) for p, s in zip(paste, reach.scale))
    inner = tuple(slice((p.start - c.start) * s, (p.stop - c.start) * s) for p, c, s in zip(paste, crop, reach.scale))
    out[b][(slice(None), *target)] = result[0][(slice(None), *inner)]


def crop_fraction(reach: Reach, low: Sequence[int], high: Sequence[int], spatial: Sequence[int]) -> float:
    """Share of the window's layer voxels the crop for a change at [low, high) covers (1.0: the whole window)."""
    boxes = reach.boxes(low, high, spatial)
    if boxes is None:
        return 1.0
    return math.prod(c.stop - c.start for c in boxes[0]) / math.prod(spatial)
