"""Per node type, once: its kind, its parameters (canonical roles and shapes), its
output shape and its multiply-accumulates.

Everything that needs to know about a layer type asks here: shape inference and
counts (`shapes`), the seeded weights, every backend's coverage test, the zoo
importers and the port checker (`kind`, `ROLES`). Adding a node type is one
`spec` dataclass, one `Rule` here, and one converter per backend; the coverage
test names every backend that still lacks it.

This module imports no framework.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from . import spec as S

Shape = Tuple[int, ...]

BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
BN_STATISTICS = ("running_mean", "running_var")

# The kinds of node that hold parameters, and their canonical roles: conv weight
# OIHW, dense weight (out, in) in C, H, W flatten order, BatchNorm scale, shift and
# running statistics. Every importer, reader and port checker uses these names.
PARAM_KINDS = ("conv", "dense", "batchnorm")
ROLES: Dict[str, Tuple[str, ...]] = {"conv": ("weight", "bias"), "dense": ("weight", "bias"),
                                     "batchnorm": BN_PARAMS}


class InputTooSmallError(ValueError):
    """The input is too small (or of the wrong rank) for a node of the model."""


@dataclass(frozen=True)
class Rule:
    """What the spec alone says about one node type.

    out_shape(path, node, in_shape) -> output shape (raises InputTooSmallError or
    ValueError naming the node); params(node, in_shape) -> canonical role ->
    shape; macs(node, in_shape, out_shape) -> multiply-accumulates per sample."""

    node_type: type
    kind: str
    out_shape: Callable[[str, S.Node, Shape], Shape]
    params: Callable[[S.Node, Shape], Dict[str, Shape]]
    macs: Callable[[S.Node, Shape, Shape], int]


# ------------------------------------------------------------------- geometry


def spatial_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int = 1,
                ceil_mode: bool = False) -> int:
    """Output length along one axis; PyTorch's ceil-mode rule (the last window must
    start inside the input or the top/left padding)."""
    span = dilation * (kernel - 1) + 1
    room = size + pad_lo + pad_hi - span
    if room < 0:
        return 0
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    if (out - 1) * stride >= size + pad_lo:
        out -= 1
    return out


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> Tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: (before, after). The output has
    ceil(size / stride) cells; the total padding is split with the smaller half first."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(node, hw: Tuple[int, int]) -> S.Pad4:
    """The (top, bottom, left, right) padding of a Conv2d, MaxPool or AvgPool on an
    input of spatial size `hw`: its own numbers, or `spec.SAME` resolved by
    TensorFlow's rule (`same_padding`)."""
    if node.padding != S.SAME:
        return node.padding
    dilation = getattr(node, "dilation", (1, 1))
    top, bottom = same_padding(hw[0], node.kernel[0], node.stride[0], dilation[0])
    left, right = same_padding(hw[1], node.kernel[1], node.stride[1], dilation[1])
    return (top, bottom, left, right)


def with_resolved_padding(node, hw: Tuple[int, int]):
    """`node` with its padding as numbers for an input of spatial size `hw`: what a
    backend builds (a node with numeric padding is returned as it is)."""
    if node.padding != S.SAME:
        return node
    return dataclasses.replace(node, padding=resolve_padding(node, hw))


def pool_output_hw(node, hw: Tuple[int, int]) -> Tuple[int, int]:
    kh, kw = node.kernel
    sh, sw = node.stride
    t, b, l, r = resolve_padding(node, hw)
    return (spatial_out(hw[0], kh, sh, t, b, ceil_mode=node.ceil_mode),
            spatial_out(hw[1], kw, sw, l, r, ceil_mode=node.ceil_mode))


def need_map(path: str, node: S.Node, shape: Shape) -> Tuple[int, int, int]:
    if len(shape) != 3:
        raise InputTooSmallError(
            f"node {path!r} ({type(node).__name__}) needs a (C, H, W) feature map, got shape {shape}")
    return shape  # type: ignore[return-value]


def too_small(path: str, node: S.Node, shape: Shape, detail: str) -> InputTooSmallError:
    return InputTooSmallError(
        f"input too small: node {path!r} ({type(node).__name__}) gets a feature map of shape "
        f"{'x'.join(map(str, shape))}, {detail}")


# ----------------------------------------------------------------- the rules


def _conv_out(path: str, node: S.Conv2d, shape: Shape) -> Shape:
    c, h, w = need_map(path, node, shape)
    if c % node.groups or node.out_channels % node.groups:
        raise ValueError(f"node {path!r}: channels {c}->{node.out_channels} not divisible by groups {node.groups}")
    t, b, l, r = resolve_padding(node, (h, w))
    oh = spatial_out(h, node.kernel[0], node.stride[0], t, b, node.dilation[0])
    ow = spatial_out(w, node.kernel[1], node.stride[1], l, r, node.dilation[1])
    if oh < 1 or ow < 1:
        raise too_small(path, node, shape, f"smaller than its {node.kernel[0]}x{node.kernel[1]} kernel after padding")
    return (node.out_channels, oh, ow)


def _conv_params(node: S.Conv2d, in_shape: Shape) -> Dict[str, Shape]:
    params = {"weight": (node.out_channels, in_shape[0] // node.groups) + tuple(node.kernel)}
    if node.bias:
        params["bias"] = (node.out_channels,)
    return params


def _conv_macs(node: S.Conv2d, in_shape: Shape, out_shape: Shape) -> int:
    return math.prod(out_shape) * (in_shape[0] // node.groups) * node.kernel[0] * node.kernel[1]


def _dense_out(path: str, node: S.Dense, shape: Shape) -> Shape:
    if len(shape) != 1:
        raise ValueError(f"node {path!r} (Dense) needs a vector input, got shape {shape}: add a Flatten")
    return (node.out_features,)


def _dense_params(node: S.Dense, in_shape: Shape) -> Dict[str, Shape]:
    params = {"weight": (node.out_features, in_shape[0])}
    if node.bias:
        params["bias"] = (node.out_features,)
    return params


def _batchnorm_params(node: S.BatchNorm, in_shape: Shape) -> Dict[str, Shape]:
    return {p: (in_shape[0],) for p in (BN_PARAMS if node.affine else BN_STATISTICS)}


def _pool_out(path: str, node, shape: Shape) -> Shape:
    c, h, w = need_map(path, node, shape)
    padding = resolve_padding(node, (h, w))
    if any(p >= k for p, k in zip(padding, (node.kernel[0],) * 2 + (node.kernel[1],) * 2)):
        raise ValueError(f"node {path!r}: pooling padding {padding} must be smaller than the kernel "
                         f"{node.kernel} on every side (a window of padding alone has no value)")
    oh, ow = pool_output_hw(node, (h, w))
    if oh < 1 or ow < 1:
        raise too_small(path, node, shape, f"smaller than its {node.kernel[0]}x{node.kernel[1]} window after padding")
    return (c, oh, ow)


def _zero_pad_out(path: str, node: S.ZeroPad, shape: Shape) -> Shape:
    c, h, w = need_map(path, node, shape)
    t, b, l, r = node.padding
    return (c, h + t + b, w + l + r)


def _adaptive_out(path: str, node: S.AdaptiveAvgPool, shape: Shape) -> Shape:
    c, _, _ = need_map(path, node, shape)
    return (c,) + tuple(node.output_size)


def _global_out(path: str, node: S.GlobalAvgPool, shape: Shape) -> Shape:
    c = need_map(path, node, shape)[0]
    return (c, 1, 1) if node.keepdims else (c,)


def _shared_out(path: str, node: S.Shared, shape: Shape) -> Shape:
    raise ValueError(f"node {path!r}: a Shared node's output shape is its target's ({node.target!r}), "
                     f"which shape inference (`shapes.infer`) resolves")


def _same(_path: str, _node: S.Node, shape: Shape) -> Shape:
    return shape


def _no_params(_node: S.Node, _in_shape: Shape) -> Dict[str, Shape]:
    return {}


def _no_macs(_node: S.Node, _in_shape: Shape, _out_shape: Shape) -> int:
    return 0


RULES: Dict[type, Rule] = {rule.node_type: rule for rule in (
    Rule(S.Conv2d, "conv", _conv_out, _conv_params, _conv_macs),
    Rule(S.Dense, "dense", _dense_out, _dense_params, lambda node, i, o: i[0] * node.out_features),
    Rule(S.BatchNorm, "batchnorm", _same, _batchnorm_params, _no_macs),
    Rule(S.Activation, "activation", _same, _no_params, _no_macs),
    Rule(S.MaxPool, "pool", _pool_out, _no_params, _no_macs),
    Rule(S.AvgPool, "pool", _pool_out, _no_params, _no_macs),
    Rule(S.GlobalAvgPool, "pool", _global_out, _no_params, _no_macs),
    Rule(S.AdaptiveAvgPool, "pool", _adaptive_out, _no_params, _no_macs),
    Rule(S.ZeroPad, "pad", _zero_pad_out, _no_params, _no_macs),
    Rule(S.Flatten, "reshape", lambda path, node, shape: (math.prod(shape),), _no_params, _no_macs),
    Rule(S.Dropout, "dropout", _same, _no_params, _no_macs),
    Rule(S.Identity, "identity", _same, _no_params, _no_macs),
    # The target's weights, applied again: no parameters of its own (they are counted
    # once, under the target); its output shape and MACs are the target's on its input,
    # which `shapes.infer` and `shapes.node_macs` take from the target's NodeInfo.
    Rule(S.Shared, "shared", _shared_out, _no_params, _no_macs),
)}

# Every leaf node type of the vocabulary (combinators: spec.CONTAINERS).
NODE_TYPES: Tuple[type, ...] = tuple(RULES)


def rule(node: S.Node) -> Rule:
    """The rule of `node`'s type; TypeError for a type outside the vocabulary."""
    found = RULES.get(type(node))
    if found is None:
        raise TypeError(f"unknown node type {type(node).__name__}; the vocabulary has "
                        f"{', '.join(t.__name__ for t in NODE_TYPES)}")
    return found


def kind(node: S.Node) -> str:
    """"conv", "dense", "batchnorm" (the parameterised kinds), "activation", "pool",
    "pad", "reshape", "dropout", "identity", "shared"; "sequential" / "parallel" for combinators."""
    if isinstance(node, S.Sequential):
        return "sequential"
    if isinstance(node, S.Parallel):
        return "parallel"
    return rule(node).kind


def has_params(node: S.Node) -> bool:
    return not isinstance(node, S.CONTAINERS) and rule(node).kind in PARAM_KINDS
