"""What a quantised graph weighs and holds: weight bytes at their stored width, and the
peak of live activation bytes of one forward, from the graph's tensors and their lifetimes.

Both are counted, not timed: device-independent, the same on every machine. Activations
count quantised tensors at their bit width and every other tensor at its dtype's; a
dequantise is counted as the tensor it reads and an op whose only user quantises its output
as producing the quantised tensor (the int8 kernels fuse both), so an fp32 graph and its
quantised twin are counted the same way.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
from torch import fx

_QUANT = "quantize_per"
_DEQUANT = "dequantize_per"


def _target(node: fx.Node) -> str:
    return str(node.target) if node.op == "call_function" else ""


def _is_quant(node: fx.Node) -> bool:
    return _QUANT in _target(node) and _DEQUANT not in _target(node)


def _is_dequant(node: fx.Node) -> bool:
    return _DEQUANT in _target(node)


def _bits_of(node: fx.Node) -> int:
    """Bit width a quantise node writes: log2 of its integer range."""
    args = node.args
    if len(args) >= 5 and all(isinstance(a, int) for a in args[-3:-1]):
        low, high = args[-3], args[-2]
        return max(1, math.ceil(math.log2(int(high) - int(low) + 1)))
    return 8


@dataclass
class WeightBytes:
    total: int
    quantised: int
    tensors: int


def graph_weight_bytes(graph: fx.GraphModule, bits: int) -> WeightBytes:
    """Bytes of every constant of ``graph``: quantised weights at ``bits`` per value (packed),
    their scales in fp32, every other constant at its dtype."""
    total, quantised, tensors = 0, 0, 0
    weight_names: set[str] = set()
    aux_names: set[str] = set()
    for node in graph.graph.nodes:
        if _is_dequant(node) and node.args and isinstance(node.args[0], fx.Node):
            source = node.args[0]
            if source.op == "get_attr":
                weight_names.add(str(source.target))
                for arg in node.args[1:3]:
                    if isinstance(arg, fx.Node) and arg.op == "get_attr":
                        aux_names.add(str(arg.target))
        if _target(node).startswith("aten.conv") or _target(node).startswith("aten.linear"):
            tensors += 1
    for name, tensor in _constants(graph):
        if name in weight_names:
            quantised += 1
            total += math.ceil(tensor.numel() * bits / 8)
        elif name in aux_names and tensor.dtype in (torch.int32, torch.int64):
            continue  # zero points of symmetric weights are all zero: nothing to store
        else:
            total += tensor.numel() * tensor.element_size()
    return WeightBytes(total, quantised, tensors)


def _constants(graph: fx.GraphModule) -> list[tuple[str, torch.Tensor]]:
    """The tensors the graph reads (a converted graph still holds the float weights it no
    longer uses)."""
    out: dict[str, torch.Tensor] = {}
    for node in graph.graph.nodes:
        if node.op == "get_attr" and str(node.target) not in out:
            value = operator.attrgetter(str(node.target))(graph)
            if isinstance(value, torch.Tensor):
                out[str(node.target)] = value
    return list(out.items())


class _Sizes(fx.Interpreter):
    """Runs the graph and keeps the byte size of each node's output."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.sizes: dict[fx.Node, int] = {}

    def run_node(self, n: fx.Node):  # type: ignore[override]
        value = super().run_node(n)
        if isinstance(value, torch.Tensor):
            inputs = {
                t.untyped_storage().data_ptr()
                for t in (self.env.get(a) for a in n.all_input_nodes)
                if isinstance(t, torch.Tensor)
            }
            if value.untyped_storage().data_ptr() in inputs:  # a view: no new bytes
                self.sizes[n] = 0
                return value
            bits = _bits_of(n) if _is_quant(n) else value.element_size() * 8
            self.sizes[n] = math.ceil(value.numel() * bits / 8)
        return value


POINTWISE = ("relu", "hardtanh", "hardswish", "silu", "gelu", "sigmoid", "clamp")
"""Unary ops inductor fuses between an int8 kernel and the quantise of its output."""


def _fused_into_quantise(node: fx.Node) -> bool:
    """Whether ``node``'s output only flows, through unary pointwise ops, into a quantise."""
    while True:
        users = list(node.users)
        if len(users) != 1:
            return False
        node = users[0]
        if _is_quant(node):
            return True
        if not any(op in _target(node) for op in POINTWISE):
            return False


@torch.no_grad()
def activation_peak_bytes(module: torch.nn.Module, example: torch.Tensor) -> int:
    """Peak of the live activation bytes of ``module(example)`` (an fx graph), constants and
    input excluded."""
    if not isinstance(module, fx.GraphModule):
        module = fx.symbolic_trace(module)
    sizes = _Sizes(module)
    sizes.run(example)
    nodes = list(module.graph.nodes)
    size = {}
    for node in nodes:
        if node.op in ("placeholder", "get_attr", "output") or node not in sizes.sizes:
            continue
        if _is_dequant(node):
            continue  # read in place by the kernel that consumes it
        if not _is_quant(node) and _fused_into_quantise(node):
            continue  # the kernel writes the quantised tensor directly
        size[node] = sizes.sizes[node]
    # a tensor lives from its producer to its last (transitive, through skipped nodes) reader
    order = {node: i for i, node in enumerate(nodes)}
    owner: dict[fx.Node, fx.Node] = {}
    for node in nodes:
        if node in size:
            owner[node] = node
        elif _is_dequant(node) or node.op == "call_function":
            sources = [a for a in node.all_input_nodes if a in owner]
            if _is_dequant(node) and sources:
                owner[node] = owner[sources[0]]
    for node in nodes:  # a quantise fed by a fused producer owns its own bytes
        if _is_quant(node) and node in size:
            owner[node] = node
    last: dict[fx.Node, int] = {}
    for node in nodes:
        for arg in node.all_input_nodes:
            if arg in owner:
                tensor = owner[arg]
                last[tensor] = max(last.get(tensor, 0), order[node])
    live, peak = 0, 0
    ending: dict[int, int] = {}
    for node in nodes:
        i = order[node]
        if node in size:
            live += size[node]
            peak = max(peak, live)
            ending[last.get(node, i)] = ending.get(last.get(node, i), 0) + size[node]
        live -= ending.pop(i, 0)
    return peak
