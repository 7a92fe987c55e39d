"""Shape inference, parameter shapes and counts, multiply-accumulates.

Everything here is computed from the spec alone; no framework is imported. The
backends use `infer` to size their layers and `pool_window_padding` to realise
ceil-mode pooling with explicit padding, so the geometry is defined once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

from . import spec as S

Shape = Tuple[int, ...]


class InputTooSmallError(ValueError):
    """The input is too small (or of the wrong rank) for a node of the model."""


@dataclass(frozen=True)
class NodeInfo:
    path: str
    node: S.Node
    in_shape: Shape
    out_shape: Shape


def _spatial_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int = 1,
                 ceil_mode: bool = False) -> int:
    span = dilation * (kernel - 1) + 1
    room = size + pad_lo + pad_hi - span
    if room < 0:
        return 0
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    # PyTorch: the last window must start inside the input or the top/left padding.
    if (out - 1) * stride >= size + pad_lo:
        out -= 1
    return out


def pool_output_hw(node, hw: Tuple[int, int]) -> Tuple[int, int]:
    kh, kw = node.kernel
    sh, sw = node.stride
    t, b, l, r = node.padding
    return (_spatial_out(hw[0], kh, sh, t, b, ceil_mode=node.ceil_mode),
            _spatial_out(hw[1], kw, sw, l, r, ceil_mode=node.ceil_mode))


def pool_window_padding(node, hw: Tuple[int, int]) -> S.Pad4:
    """Padding (top, bottom, left, right) after which a 'valid' (floor) pool gives
    the same windows as `node` on an input of size `hw`: the node's own padding
    plus the ceil-mode overhang at the bottom and right."""
    oh, ow = pool_output_hw(node, hw)
    t, b, l, r = node.padding
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
    t, b, l, r = node.padding
    fh, vh = per_axis(hw[0], node.kernel[0], node.stride[0], t, b, oh)
    fw, vw = per_axis(hw[1], node.kernel[1], node.stride[1], l, r, ow)
    if node.count_include_pad:
        return np.outer(fh, fw)
    return np.outer(vh, vw)


def adaptive_windows(size: int, out: int) -> List[Tuple[int, int]]:
    """[start, end) input ranges of PyTorch's adaptive pooling along one axis."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _need_map(path: str, node: S.Node, shape: Shape) -> Tuple[int, int, int]:
    if len(shape) != 3:
        raise InputTooSmallError(
            f"node {path!r} ({type(node).__name__}) needs a (C, H, W) feature map, got shape {shape}")
    return shape  # type: ignore[return-value]


def _too_small(path: str, node: S.Node, shape: Shape, detail: str) -> InputTooSmallError:
    return InputTooSmallError(
        f"input too small: node {path!r} ({type(node).__name__}) gets a feature map of shape "
        f"{'x'.join(map(str, shape))}, {detail}")


def _leaf_out(path: str, node: S.Node, shape: Shape) -> Shape:
    if isinstance(node, S.Conv2d):
        c, h, w = _need_map(path, node, shape)
        if c % node.groups or node.out_channels % node.groups:
            raise ValueError(f"node {path!r}: channels {c}->{node.out_channels} not divisible by groups {node.groups}")
        t, b, l, r = node.padding
        oh = _spatial_out(h, node.kernel[0], node.stride[0], t, b, node.dilation[0])
        ow = _spatial_out(w, node.kernel[1], node.stride[1], l, r, node.dilation[1])
        if oh < 1 or ow < 1:
            raise _too_small(path, node, shape, f"smaller than its {node.kernel[0]}x{node.kernel[1]} kernel after padding")
        return (node.out_channels, oh, ow)
    if isinstance(node, (S.MaxPool, S.AvgPool)):
        c, h, w = _need_map(path, node, shape)
        if any(p >= k for p, k in zip(node.padding, (node.kernel[0],) * 2 + (node.kernel[1],) * 2)):
            raise ValueError(f"node {path!r}: pooling padding {node.padding} must be smaller than the kernel "
                             f"{node.kernel} on every side (a window of padding alone has no value)")
        oh, ow = pool_output_hw(node, (h, w))
        if oh < 1 or ow < 1:
            raise _too_small(path, node, shape, f"smaller than its {node.kernel[0]}x{node.kernel[1]} window after padding")
        return (c, oh, ow)
    if isinstance(node, S.ZeroPad):
        c, h, w = _need_map(path, node, shape)
        t, b, l, r = node.padding
        return (c, h + t + b, w + l + r)
    if isinstance(node, S.AdaptiveAvgPool):
        c, _, _ = _need_map(path, node, shape)
        return (c,) + tuple(node.output_size)
    if isinstance(node, S.GlobalAvgPool):
        return (_need_map(path, node, shape)[0],)
    if isinstance(node, S.Flatten):
        return (math.prod(shape),)
    if isinstance(node, S.Dense):
        if len(shape) != 1:
            raise ValueError(f"node {path!r} (Dense) needs a vector input, got shape {shape}: add a Flatten")
        return (node.out_features,)
    if isinstance(node, (S.BatchNorm, S.Activation, S.Dropout, S.Identity)):
        return shape
    raise TypeError(f"node {path!r}: unknown node type {type(node).__name__}")


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
    else:
        result = _leaf_out(path, node, shape)
    out[path] = NodeInfo(path, node, tuple(shape), tuple(result))
    return result


def infer(model: S.ModelSpec, input_shape=None) -> Dict[str, NodeInfo]:
    """NodeInfo for every node, keyed by path, in execution order (root last)."""
    shape = tuple(input_shape or model.input_shape)
    out: Dict[str, NodeInfo] = {}
    _infer(model.root, "", shape, out)
    return out


def output_shape(model: S.ModelSpec, input_shape=None) -> Shape:
    return infer(model, input_shape)[""].out_shape


# ------------------------------------------------------------------------ parameters

BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
BN_STATISTICS = ("running_mean", "running_var")


def node_param_shapes(info: NodeInfo) -> Dict[str, Shape]:
    """Canonical parameter shapes of one node: conv OIHW, dense (out, in)."""
    node = info.node
    if isinstance(node, S.Conv2d):
        shapes = {"weight": (node.out_channels, info.in_shape[0] // node.groups) + tuple(node.kernel)}
        if node.bias:
            shapes["bias"] = (node.out_channels,)
        return shapes
    if isinstance(node, S.Dense):
        shapes = {"weight": (node.out_features, info.in_shape[0])}
        if node.bias:
            shapes["bias"] = (node.out_features,)
        return shapes
    if isinstance(node, S.BatchNorm):
        return {p: (info.in_shape[0],) for p in (BN_PARAMS if node.affine else BN_STATISTICS)}
    return {}


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
    node = info.node
    if isinstance(node, S.Conv2d):
        c_in = info.in_shape[0] // node.groups
        return math.prod(info.out_shape) * c_in * node.kernel[0] * node.kernel[1]
    if isinstance(node, S.Dense):
        return info.in_shape[0] * node.out_features
    return 0


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
