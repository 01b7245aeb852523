"""Splitting a network at a named layer into a prefix and a suffix (torch.fx).

    split = split_network(network, "model.1.submodule.2")
    boundary = split.prefix(x)              # (layer output, *values the rest still needs)
    logits = split.suffix(*boundary)        # == network(x)

The prefix computes the layer's output and every value computed before it that
the rest of the network uses (skip connections, shapes); the suffix holds only
the operations that depend on the layer's output. Steering edits the layer
output and re-runs the suffix, so everything upstream is computed once.

Both parts are `torch.fx.GraphModule`s over the original network's modules:
they share its parameters, so they always run the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn

from ..errors import CompatibilityError, ParameterError
from .cpu_convolution import OneDNNConv3d


class _LayerAsLeafTracer(fx.Tracer):
    """The default tracer, except that the hooked layer stays one call (its output is one graph node) and
    so do our CPU convolutions (`OneDNNConv3d`, a torch.nn layer by behaviour, not by module path)."""

    def __init__(self, layer: str):
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return (
            qualified_name == self.layer
            or isinstance(module, OneDNNConv3d)
            or super().is_leaf_module(module, qualified_name)
        )


@dataclass
class SplitNetwork:
    """`prefix(x) -> (h, *boundary)`, `suffix(h, *boundary) -> output`; `boundary_names` name the extra values."""

    prefix: fx.GraphModule
    suffix: fx.GraphModule
    layer: str
    boundary_names: tuple[str, ...]


def _reachable(starts, step) -> set[fx.Node]:
    """Nodes reachable from `starts` by repeatedly following `step(node)` (users or inputs), starts excluded
    unless reached again."""
    seen: set[fx.Node] = set()
    stack = [n for start in starts for n in step(start)]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(step(node))
    return seen


def _hooked_node(graph: fx.Graph, layer: str) -> fx.Node:
    calls = [node for node in graph.nodes if node.op == "call_module" and node.target == layer]
    if len(calls) != 1:
        raise CompatibilityError(
            f"layer {layer!r} is called {len(calls)} times in the network's forward pass; steering needs a layer "
            "that runs "
            "exactly once (list them with `medseglens layers`)"
        )
    return calls[0]


def _moves_with_suffix(node: fx.Node) -> bool:
    """Parameters and constants are re-read in the suffix rather than passed across the split."""
    return node.op == "get_attr"


def split_network(network: nn.Module, layer: str) -> SplitNetwork:
    """Split `network` at `layer` (a `named_modules()` name); refuses layers that do not feed the output."""
    modules = dict(network.named_modules())
    if layer not in modules or not layer:
        raise ParameterError(f"the network has no layer named {layer!r}; list the layers with `medseglens layers`")
    tracer = _LayerAsLeafTracer(layer)
    try:
        graph = tracer.trace(network)
    except Exception as exc:  # fx raises many types for untraceable code
        raise CompatibilityError(
            f"the network cannot be traced by torch.fx ({type(exc).__name__}: {exc}); "
            "steering needs a traceable network"
        ) from None
    hooked = _hooked_node(graph, layer)
    after = _reachable([hooked], lambda n: n.users)
    output = next(node for node in graph.nodes if node.op == "output")
    if output not in after:
        raise CompatibilityError(
            f"layer {layer!r} does not feed the network's output; choose a layer on the path to the logits"
        )
    # Values computed before the split that the suffix reads: passed across, except constants.
    boundary: list[fx.Node] = []
    for node in graph.nodes:
        if node in after or node is hooked or _moves_with_suffix(node):
            continue
        if any(user in after for user in node.users):
            boundary.append(node)

    prefix_graph = fx.Graph()
    needed = _reachable([hooked, *boundary], lambda n: n.all_input_nodes) | {hooked, *boundary}
    env: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        if node in needed:
            env[node] = prefix_graph.node_copy(node, lambda n: env[n])
    prefix_graph.output(tuple(env[n] for n in (hooked, *boundary)))

    suffix_graph = fx.Graph()
    senv: dict[fx.Node, fx.Node] = {hooked: suffix_graph.placeholder("layer_output")}
    for index, node in enumerate(boundary):
        senv[node] = suffix_graph.placeholder(f"boundary_{index}_{node.name}")
    for node in graph.nodes:
        if _moves_with_suffix(node) and any(user in after for user in node.users):
            senv[node] = suffix_graph.node_copy(node, lambda n: senv[n])
    for node in graph.nodes:
        if node in after:
            senv[node] = suffix_graph.node_copy(node, lambda n: senv[n])

    prefix = fx.GraphModule(network, prefix_graph, class_name="Prefix")
    suffix = fx.GraphModule(network, suffix_graph, class_name="Suffix")
    return SplitNetwork(prefix, suffix, layer, tuple(node.name for node in boundary))


def check_split(split: SplitNetwork, network: nn.Module, example: torch.Tensor) -> float:
    """Largest absolute difference between the split network and the original on `example` (0.0 expected)."""
    with torch.no_grad():
        whole = network(example)
        parts = split.suffix(*split.prefix(example))
    return float((whole - parts).abs().max())


@dataclass
class LinearEntry:
    """The suffix's first operation when it is one convolution of the layer output (maybe concatenated).

    `entry(h, *boundary) -> conv output`, `rest(conv output, *boundary') -> output`, and
    conv output = conv(cat(..., h, ...)), with h at input channels `offset : offset + channels`
    of `conv`. Being linear in h, a change of h can be pushed through `conv` alone.
    """

    entry: fx.GraphModule
    rest: fx.GraphModule
    conv: nn.Module
    offset: int
    channels: int


_ENTRY_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _single_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def find_linear_entry(split: SplitNetwork, layer_channels: int) -> LinearEntry | None:
    """The suffix's leading convolution, when the layer output reaches the rest only through it; else None."""
    graph = split.suffix.graph
    modules = dict(split.suffix.named_modules())
    placeholder = next(node for node in graph.nodes if node.op == "placeholder")
    user = _single_user(placeholder)
    position = "only"
    if user is not None and user.op == "call_function" and user.target is torch.cat:
        parts = list(user.args[0])
        dim = user.args[1] if len(user.args) > 1 else user.kwargs.get("dim", 0)
        if (
            dim != 1
            or parts.count(placeholder) != 1
            or any(not isinstance(p, fx.Node) or (p is not placeholder and p.op != "placeholder") for p in parts)
        ):
            return None
        index = parts.index(placeholder)
        if 0 < index < len(parts) - 1:
            return None  # the channel offset would depend on widths only known at run time
        position = "first" if index == 0 else "last"
        user = _single_user(user)
    if user is None or user.op != "call_module":
        return None
    conv = modules.get(str(user.target))
    if not isinstance(conv, _ENTRY_CONVS) or conv.groups != 1 or conv.padding_mode != "zeros":
        return None
    offset = conv.in_channels - layer_channels if position == "last" else 0
    inner = split_network(split.suffix, str(user.target))
    return LinearEntry(inner.prefix, inner.suffix, conv, offset, layer_channels)
