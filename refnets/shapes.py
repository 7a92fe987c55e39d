"""Shape inference, parameter shapes and counts, multiply-accumulates, from the
per-node-type rules (`rules`).

Everything here is computed from the spec alone; no framework is imported. The
backends use `infer` to size their layers and `pool_window_padding` to realise
ceil-mode pooling with explicit padding, so the geometry is defined once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import rules
from . import spec as S
from .rules import InputTooSmallError, pool_output_hw, resolve_padding  # noqa: F401 (public here too)

Shape = Tuple[int, ...]


@dataclass(frozen=True)
class NodeInfo:
    path: str
    node: S.Node
    in_shape: Shape
    out_shape: Shape
    target: Optional["NodeInfo"] = None  # a Shared node's: the layer it applies again

    @property
    def applied(self) -> S.Node:
        """The node whose computation runs here: a Shared node's target, else the node."""
        return self.node if self.target is None else self.target.node


def pool_window_padding(node, hw: Tuple[int, int]) -> S.Pad4:
    """Padding (top, bottom, left, right) after which a 'valid' (floor) pool gives
    the same windows as `node` on an input of size `hw`: the node's own padding
    plus the ceil-mode overhang at the bottom and right."""
    oh, ow = pool_output_hw(node, hw)
    t, b, l, r = resolve_padding(node, hw)
    extra_h = max(0, (oh - 1) * node.stride[0] + node.kernel[0] - (hw[0] + t + b))
    extra_w = max(0, (ow - 1) * node.stride[1] + node.kernel[1] - (hw[1] + l + r))
    return (t, b + extra_h, l, r + extra_w)


def avgpool_divisors(node: S.AvgPool, hw: Tuple[int, int]):
    """The divisor of every output cell of an AvgPool, as a float64 numpy array
    (oh, ow), by PyTorch's rule (see `spec.AvgPool`)."""
    import numpy as np

    def per_axis(size, k, s, lo, hi, out):
        full, valid = [], []
        for i in range(out):
            start = i * s - lo
            end = min(start + k, size + hi)
            full.append(end - start)
            valid.append(min(end, size) - max(start, 0))
        return np.array(full, float), np.array(valid, float)

    oh, ow = pool_output_hw(node, hw)
    t, b, l, r = resolve_padding(node, hw)
    fh, vh = per_axis(hw[0], node.kernel[0], node.stride[0], t, b, oh)
    fw, vw = per_axis(hw[1], node.kernel[1], node.stride[1], l, r, ow)
    if node.count_include_pad:
        return np.outer(fh, fw)
    return np.outer(vh, vw)


def adaptive_windows(size: int, out: int) -> List[Tuple[int, int]]:
    """[start, end) input ranges of PyTorch's adaptive pooling along one axis."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _leaf_out(path: str, node: S.Node, shape: Shape) -> Shape:
    try:
        node_rule = rules.rule(node)
    except TypeError as err:
        raise TypeError(f"node {path!r}: {err}") from None
    return node_rule.out_shape(path, node, shape)


def _merge(path: str, node: S.Parallel, shapes: List[Shape]) -> Shape:
    if not shapes:
        raise ValueError(f"node {path!r}: Parallel without branches")
    if node.merge == "add":
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"node {path!r}: cannot add branches of shapes {shapes}")
        return shapes[0]
    if any(s[1:] != shapes[0][1:] for s in shapes):
        raise InputTooSmallError(f"node {path!r}: cannot concatenate branches of shapes {shapes} along channels")
    return (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])


def _infer(node: S.Node, path: str, shape: Shape, out: Dict[str, NodeInfo]) -> Shape:
    if isinstance(node, S.Sequential):
        current = shape
        for index, child in enumerate(node.children):
            current = _infer(child, S.join(path, S.child_segment(child, index)), current, out)
        result = current
    elif isinstance(node, S.Parallel):
        outs = [_infer(b, S.join(path, S.child_segment(b, i)), shape, out) for i, b in enumerate(node.branches)]
        result = _merge(path, node, outs)
    elif isinstance(node, S.Shared):
        target = _shared_target(path, node, shape, out)
        out[path] = NodeInfo(path, node, tuple(shape), target.out_shape, target)
        return target.out_shape
    else:
        result = _leaf_out(path, node, shape)
    out[path] = NodeInfo(path, node, tuple(shape), tuple(result))
    return result


def _shared_target(path: str, node: S.Shared, shape: Shape, out: Dict[str, NodeInfo]) -> NodeInfo:
    """The NodeInfo of a Shared node's target (already inferred: it runs first);
    ValueError naming both paths when there is none or its input shape differs
    (the same weights cannot take another shape)."""
    target = out.get(node.target)
    if target is None or not rules.has_params(target.node):
        raise ValueError(f"shared node {path!r}: its target {node.target!r} is not a parameterised layer "
                         f"that runs before it")
    if tuple(shape) != target.in_shape:
        raise ValueError(f"shared node {path!r} gets input shape {tuple(shape)}, but its target "
                         f"{node.target!r} takes {target.in_shape}")
    return target


def infer(model: S.ModelSpec, input_shape=None) -> Dict[str, NodeInfo]:
    """NodeInfo for every node, keyed by path, in execution order (root last)."""
    shape = tuple(input_shape or model.input_shape)
    out: Dict[str, NodeInfo] = {}
    _infer(model.root, "", shape, out)
    return out


def output_shape(model: S.ModelSpec, input_shape=None) -> Shape:
    return infer(model, input_shape)[""].out_shape


# ------------------------------------------------------------------------ parameters

BN_PARAMS = rules.BN_PARAMS
BN_STATISTICS = rules.BN_STATISTICS


def node_param_shapes(info: NodeInfo) -> Dict[str, Shape]:
    """Canonical parameter shapes of one node: conv OIHW, dense (out, in)."""
    if isinstance(info.node, S.CONTAINERS):
        return {}
    return rules.rule(info.node).params(info.node, info.in_shape)


def param_shapes(model: S.ModelSpec, input_shape=None) -> Dict[str, Shape]:
    """Canonical name -> shape for every parameter and BatchNorm statistic."""
    shapes: Dict[str, Shape] = {}
    for path, info in infer(model, input_shape).items():
        for param, shape in node_param_shapes(info).items():
            shapes[S.join(path, param)] = shape
    return shapes


@dataclass(frozen=True)
class Counts:
    trainable: int
    total: int  # includes BatchNorm running statistics, as Keras counts them
    macs: int


def node_macs(info: NodeInfo) -> int:
    """Multiply-accumulates per sample; a Shared node does its target's work again."""
    if isinstance(info.node, S.CONTAINERS):
        return 0
    node = info.applied
    return rules.rule(node).macs(node, info.in_shape, info.out_shape)


def counts(model: S.ModelSpec, input_shape=None) -> Counts:
    infos = infer(model, input_shape)
    trainable = total = 0
    for info in infos.values():
        for param, shape in node_param_shapes(info).items():
            size = math.prod(shape)
            total += size
            if param not in BN_STATISTICS:
                trainable += size
    macs = sum(node_macs(i) for i in infos.values())
    return Counts(trainable=trainable, total=total, macs=macs)


@dataclass(frozen=True)
class TorchsummaryCounts:
    total: int
    trainable: int
    non_trainable: int


def torchsummary_counts(model: S.ModelSpec, input_shape=None) -> TorchsummaryCounts:
    """"Total params / Trainable params / Non-trainable params" as torchsummary's
    `summary(model, input_size)` prints them, to hold against a tutorial's printout.

    torchsummary hooks every module and, on each call, adds the sizes of that
    module's own `weight` and `bias` tensors. So it counts parameters only (BatchNorm
    running statistics are buffers: left out), and it counts a layer each time it is
    called: a `Shared` node counts its target's parameters again. Trainable means
    `weight.requires_grad`, true for every layer of a freshly built model, so
    non-trainable is 0 here (it only grows when a user freezes layers)."""
    infos = infer(model, input_shape)
    total = 0
    for info in infos.values():
        owner = infos[info.node.target] if isinstance(info.node, S.Shared) else info
        total += sum(math.prod(shape) for param, shape in node_param_shapes(owner).items()
                     if param not in BN_STATISTICS)
    return TorchsummaryCounts(total=total, trainable=total, non_trainable=0)
