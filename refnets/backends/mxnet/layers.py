"""Gluon blocks for what gluon.nn cannot express exactly: per-side conv padding,
-inf pool padding (asymmetric or ceil-mode: MXNet's 'full' convention does not
follow PyTorch's ceil-mode rule), PyTorch-rule average pools over explicit padding,
PyTorch's adaptive pool, and the containers that register children under the
spec's segment names."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Dict, Tuple

import mxnet as mx

from ... import shapes
from ... import spec as S
from .framework import nn


def symmetric(pad: S.Pad4):
    t, b, l, r = pad
    return (t, l) if (t == b and l == r) else None


def native_pool_padding(node):
    """(ph, pw) when Gluon's own pooling computes exactly what the spec says:
    symmetric padding of at most half the window (so no window is all padding)
    and floor mode; else None."""
    sym = symmetric(node.padding)
    if node.ceil_mode or sym is None:
        return None
    if any(p > k // 2 for p, k in zip(sym, node.kernel)):
        return None
    return sym


def pad_width(pad: S.Pad4) -> Tuple[int, ...]:
    """(top, bottom, left, right) as `F.pad`'s pad_width over N, C, H, W."""
    t, b, l, r = pad
    return (0, 0, 0, 0, t, b, l, r)


# ---------------------------------------------------------------------------- leaves


class PaddedConv2D(nn.Conv2D):
    """A conv with zero padding that may differ per side: an explicit zero pad,
    then a valid conv. A subclass (not a wrapper) so its parameters stay
    `<path>.weight` and `<path>.bias`."""

    def __init__(self, side_padding: S.Pad4, **kwargs):
        super().__init__(padding=0, **kwargs)
        self._pad = pad_width(side_padding)

    def hybrid_forward(self, F, x, weight, bias=None):
        padded = F.pad(x, mode="constant", pad_width=self._pad, constant_value=0)
        return super().hybrid_forward(F, padded, weight, bias)


class PaddedMaxPool(nn.HybridBlock):
    """Max pool over an explicit -inf pad (the node's padding plus the ceil-mode
    overhang), then a 'valid' (floor) pool."""

    def __init__(self, node: S.MaxPool, window_padding: S.Pad4):
        super().__init__()
        self._pad = pad_width(window_padding)
        self._kernel, self._stride = tuple(node.kernel), tuple(node.stride)

    def hybrid_forward(self, F, x):
        padded = F.pad(x, mode="constant", pad_width=self._pad, constant_value=float("-inf"))
        return F.Pooling(padded, kernel=self._kernel, stride=self._stride, pool_type="max",
                         pooling_convention="valid")


class DivisorAvgPool(nn.HybridBlock):
    """Average pool as a zero-padded sum pool divided by the spec's divisor map
    (`shapes.avgpool_divisors`), for padding or ceil mode that Gluon's AvgPool2D
    cannot express. The divisor is a Gluon `Constant`, which is not a weight."""

    def __init__(self, node: S.AvgPool, window_padding: S.Pad4, in_hw):
        super().__init__()
        self._pad = pad_width(window_padding)
        self._kernel, self._stride = tuple(node.kernel), tuple(node.stride)
        divisor = shapes.avgpool_divisors(node, in_hw)
        self.divisor = self.params.get_constant("divisor", mx.nd.array(divisor[None, None], dtype="float64"))

    def hybrid_forward(self, F, x, divisor):
        padded = F.pad(x, mode="constant", pad_width=self._pad, constant_value=0)
        summed = F.Pooling(padded, kernel=self._kernel, stride=self._stride, pool_type="sum",
                           pooling_convention="valid")
        return F.broadcast_div(summed, divisor)


class ZeroPad(nn.HybridBlock):
    def __init__(self, padding: S.Pad4):
        super().__init__()
        self._pad = pad_width(padding)

    def hybrid_forward(self, F, x):
        return F.pad(x, mode="constant", pad_width=self._pad, constant_value=0)


class AdaptiveAvgPool(nn.HybridBlock):
    """PyTorch's adaptive average pool; MXNet's contrib operator uses the same
    windows (checked against PyTorch, upsampling included)."""

    def __init__(self, output_size: S.Pair):
        super().__init__()
        self._output_size = tuple(output_size)

    def hybrid_forward(self, F, x):
        return F.contrib.AdaptiveAvgPooling2D(x, output_size=self._output_size)


class GlobalAvgPool(nn.HybridBlock):
    """Mean over H and W: (N, C, H, W) -> (N, C), or (N, C, 1, 1) with `keepdims`."""

    def __init__(self, keepdims: bool = False):
        super().__init__()
        self._keepdims = keepdims

    def hybrid_forward(self, F, x):
        return F.mean(x, axis=(2, 3), keepdims=self._keepdims)


class Softmax(nn.HybridBlock):
    """Softmax over axis 1 (channels of a map, features of a vector): gluon.nn's
    Activation has no softmax."""

    def hybrid_forward(self, F, x):
        return F.softmax(x, axis=1)


class SharedBlock(nn.HybridBlock):
    """Calls a block registered elsewhere in the model (a spec `Shared` node). The
    block is held in a namespace, outside Gluon's child registry, so its parameters
    are collected once, under the target's name; a hybridized graph uses the same
    parameter variables at both places, and autograd adds up their gradients."""

    def __init__(self, target: nn.HybridBlock):
        super().__init__()
        self._shared = SimpleNamespace(block=target)

    def hybrid_forward(self, F, x):
        return self._shared.block(x)


class Identity(nn.HybridBlock):
    """Passes its input through. A copy rather than the input itself, so a graph
    whose output is its input stays a valid cached graph."""

    def hybrid_forward(self, F, x):
        return F.identity(x)


# ------------------------------------------------------------------------ containers


class SpecSequential(nn.HybridBlock):
    """Runs its children in order; they are registered under the spec's segment names."""

    def __init__(self, children: Dict[str, nn.HybridBlock]):
        super().__init__()
        for name, block in children.items():
            self.register_child(block, name)

    def hybrid_forward(self, F, x):
        if not self._children:
            return F.identity(x)
        for block in self._children.values():
            x = block(x)
        return x


class SpecParallel(nn.HybridBlock):
    """Every branch gets the same input; outputs are concatenated along channels
    (in branch order) or added element-wise."""

    def __init__(self, branches: Dict[str, nn.HybridBlock], merge: str):
        super().__init__()
        for name, block in branches.items():
            self.register_child(block, name)
        self._merge = merge

    def hybrid_forward(self, F, x):
        outs = [branch(x) for branch in self._children.values()]
        if self._merge == "add":
            total = outs[0]
            for out in outs[1:]:
                total = total + out
            return total
        return F.concat(*outs, dim=1)
