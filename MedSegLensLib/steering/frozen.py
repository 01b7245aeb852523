"""Region-limited recomputation with instance-norm statistics frozen at their unsteered values.

Instance normalisation makes every output voxel of a window depend on the whole
window's statistics, so an exact steering update must recompute whole windows.
With the statistics of the unsteered pass frozen, the part of the network after
the entry convolution becomes local (stride-1 "same" convolutions and pointwise
operations): a change confined to a box changes the output only within the box
grown by the receptive radius r, and computing it needs the input grown by 2r.
That is what `FrozenRest` recomputes. It is an approximation (the statistics do
move when steering a large region); the session keeps the exact path as default.

`CasePreview` is the viewer's preview: the windows of a case overlap (each voxel of
a demo case lies in ~4 of its 12 windows) and a tumour region reaches every one, so
recomputing a crop per window repeats most of the work. The preview instead blends
the windows' entry outputs and their changes onto the case grid (as MONAI blends
logits), runs the frozen rest once over the box the change reaches, with each
norm's statistics pooled over the windows, and adds rest(entry + change) -
rest(entry) to the unsteered logits.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from .windows import Box

_POINTWISE_MODULES = (
    nn.ReLU,
    nn.PReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Dropout,
    nn.Identity,
)
_POINTWISE_FUNCTIONS = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.cat,
    torch.relu,
    F.relu,
    F.gelu,
    F.leaky_relu,
    F.prelu,
}
_POINTWISE_METHODS = {"add", "sub", "mul", "relu", "contiguous", "clone"}


class FrozenNorm(nn.Module):
    """Instance norm with given per-(sample, channel) statistics instead of the input's own."""

    def __init__(self, norm: nn.modules.instancenorm._InstanceNorm):
        super().__init__()
        self.norm = norm
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.stats
        shape = mean.shape + (1,) * (x.ndim - 2)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.norm.eps)
        if self.norm.affine:
            y = y * self.norm.weight.view((1, -1) + (1,) * (x.ndim - 2)) + self.norm.bias.view(
                (1, -1) + (1,) * (x.ndim - 2)
            )
        return y


def receptive_radius(module: fx.GraphModule) -> tuple[int, ...] | None:
    """Voxels of context each output voxel reads per axis, when the graph is local and keeps its resolution; else None.

    Conservative: the radii of all convolutions are summed, whatever the paths.
    """
    modules = dict(module.named_modules())
    radius = None
    for node in module.graph.nodes:
        if node.op == "call_module":
            sub = modules[str(node.target)]
            if isinstance(sub, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                step = _same_conv_radius(sub)
                if step is None:
                    return None
                radius = step if radius is None else tuple(a + b for a, b in zip(radius, step))
            elif not isinstance(sub, (*_POINTWISE_MODULES, nn.modules.instancenorm._InstanceNorm)):
                return None
        elif node.op == "call_function" and node.target not in _POINTWISE_FUNCTIONS:
            return None
        elif node.op == "call_method" and node.target not in _POINTWISE_METHODS:
            return None
    return radius or (0, 0, 0)


def _same_conv_radius(conv: nn.Module) -> tuple[int, ...] | None:
    if any(s != 1 for s in conv.stride) or isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        return None
    radius = tuple(d * (k // 2) for d, k in zip(conv.dilation, conv.kernel_size))
    return radius if tuple(conv.padding) == radius and all(k % 2 for k in conv.kernel_size) else None


def instance_norm_nodes(module: fx.GraphModule) -> list[str]:
    modules = dict(module.named_modules())
    return [
        str(n.target)
        for n in module.graph.nodes
        if n.op == "call_module" and isinstance(modules[str(n.target)], nn.modules.instancenorm._InstanceNorm)
    ]


def _set_submodule(root: nn.Module, target: str, new: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


class FrozenRest:
    """A copy of `rest` whose instance norms use recorded statistics, recomputed on crops around a change."""

    def __init__(self, rest: fx.GraphModule, radius: Sequence[int]):
        self.rest = rest
        self.radius = tuple(radius)
        self.norm_names = instance_norm_nodes(rest)
        self.frozen = fx.GraphModule(rest, rest.graph, class_name="FrozenRest")  # fresh containers, same leaves
        self.norms: list[FrozenNorm] = []
        for name in self.norm_names:
            wrapper = FrozenNorm(rest.get_submodule(name))
            _set_submodule(self.frozen, name, wrapper)
            self.norms.append(wrapper)

    def record(self, entry_out: torch.Tensor, rest_boundary: tuple) -> tuple[torch.Tensor, list]:
        """Run the true `rest` and capture each instance norm's input statistics: (logits, [(mean, var)] per norm)."""
        stats: list = []

        def hook(_module, inputs, _output):
            x = inputs[0]
            dims = tuple(range(2, x.ndim))
            stats.append((x.mean(dims), x.var(dims, unbiased=False)))

        handles = [self.rest.get_submodule(name).register_forward_hook(hook) for name in self.norm_names]
        try:
            logits = self.rest(entry_out, *rest_boundary)
        finally:
            for handle in handles:
                handle.remove()
        return logits, stats

    def run(self, entry_out: torch.Tensor, rest_boundary: tuple, stats: list) -> torch.Tensor:
        """The rest with its instance norms using `stats` ([(mean, var)] per norm, each (1, C))."""
        for norm, stat in zip(self.norms, stats):
            norm.stats = stat
        return self.frozen(entry_out, *rest_boundary)

    def patch(
        self,
        window_logits: torch.Tensor,
        steered_in: torch.Tensor,
        change: torch.Tensor,
        stats: list,
        rest_boundary: tuple,
    ) -> tuple[torch.Tensor, int]:
        """Window logits (B, K, ...) updated where a nonzero `change` of the entry output can reach, and how many
        windows were recomputed on a crop smaller than the window."""
        out = window_logits.clone()
        spatial, cropped = steered_in.shape[2:], 0
        for b in range(steered_in.shape[0]):
            nonzero = change[b].abs().amax(0).nonzero()
            if not len(nonzero):
                continue
            low, high = nonzero.amin(0).tolist(), (nonzero.amax(0) + 1).tolist()
            paste = [slice(max(0, lo - r), min(n, hi + r)) for lo, hi, r, n in zip(low, high, self.radius, spatial)]
            crop = [
                slice(max(0, lo - 2 * r), min(n, hi + 2 * r)) for lo, hi, r, n in zip(low, high, self.radius, spatial)
            ]
            cropped += any(c.stop - c.start < n for c, n in zip(crop, spatial))
            window_stats = [(mean[b : b + 1], var[b : b + 1]) for mean, var in stats]
            boundary = tuple(_crop_like(t, b, crop, spatial) for t in rest_boundary)
            result = self.run(steered_in[b : b + 1][(..., *crop)].contiguous(), boundary, window_stats)
            inner = tuple(slice(p.start - c.start, p.stop - c.start) for p, c in zip(paste, crop))
            out[b][(slice(None), *paste)] = result[0][(slice(None), *inner)]
        return out, cropped


def _crop_like(value, b: int, crop: list[slice], spatial) -> object:
    if isinstance(value, torch.Tensor) and tuple(value.shape[2:]) == tuple(spatial):
        return value[b : b + 1][(..., *crop)].contiguous()
    return value


def croppable(rest: fx.GraphModule, rest_boundary: tuple, spatial) -> bool:
    """True when every tensor the rest reads besides the entry output has the entry output's spatial size."""
    return all(not isinstance(t, torch.Tensor) or tuple(t.shape[2:]) == tuple(spatial) for t in rest_boundary)


def pooled_statistics(per_batch: Sequence[list]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each norm's statistics over all windows together, windows weighted equally: [(mean, var)] per norm, (1, C).

    `per_batch` holds, per window batch, the [(mean, var)] per norm that `FrozenRest.record` captured.
    """
    pooled = []
    for per_norm in zip(*per_batch):
        means = torch.cat([mean for mean, _ in per_norm])
        second = torch.cat([var + mean * mean for mean, var in per_norm]).mean(0, keepdim=True)
        mean = means.mean(0, keepdim=True)
        pooled.append((mean, (second - mean * mean).clamp_min(0)))
    return pooled


EntryOver = Callable[[Box], tuple[torch.Tensor, tuple]]


class CasePreview:
    """The frozen-statistics preview over the case grid: one run of the rest over the box a change reaches.

    The unsteered entry output over a box (blended from the windows) and the rest's output for it are kept for
    the last box: while a slider is dragged the region, hence the box, stays the same, so each update runs the
    rest once. The preview is an approximation of the exact (per-window, true-statistics) result; zero change
    gives the unsteered logits exactly.
    """

    def __init__(self, frozen: FrozenRest, stats: Sequence[list], shape: Sequence[int]):
        self.frozen = frozen
        self.stats = pooled_statistics(stats)
        self.shape = tuple(shape)
        self._before: tuple[Box, torch.Tensor, tuple, torch.Tensor] | None = None

    def delta(self, box: Box, change: torch.Tensor, entry_over: EntryOver) -> tuple[Box, torch.Tensor]:
        """(box the change reaches, logits change there) for an entry-output change (1, C, *box) on the case grid.

        `entry_over(box)` gives the unsteered entry output (1, C, *box) and the rest's other inputs cut to a box.
        """
        reach = _grown(box, self.frozen.radius, self.shape)
        outer = _grown(box, tuple(2 * r for r in self.frozen.radius), self.shape)
        if self._before is None or self._before[0] != outer:
            entry, boundary = entry_over(outer)
            self._before = (outer, entry, boundary, self.frozen.run(entry, boundary, self.stats))
        _, entry, boundary, before = self._before
        steered = entry.clone()
        steered[(slice(None), slice(None), *_within(box, outer))] += change
        after = self.frozen.run(steered, boundary, self.stats)
        inner = (slice(None), slice(None), *_within(reach, outer))
        return reach, after[inner] - before[inner]


def _grown(box: Box, radius: Sequence[int], shape: Sequence[int]) -> Box:
    return tuple(slice(max(0, b.start - r), min(n, b.stop + r)) for b, r, n in zip(box, radius, shape))


def _within(box: Box, outer: Box) -> Box:
    """`box` in the coordinates of `outer` (which contains it)."""
    return tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer))
