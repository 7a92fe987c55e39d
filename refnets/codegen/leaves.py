"""What code generation needs to know about one leaf node: its structural choice
(which module or helper realises it: part of a block's signature, never a
constructor argument) and its field values (which may become arguments where
they differ between the instances of a block).

Field values are normalised the way hand-written code states them: a square
kernel or stride as one int, symmetric padding as an int or (h, w).

This module imports no framework.
"""

from __future__ import annotations

from typing import Dict, Tuple

from .. import shapes
from .. import spec as S

# Fields that size a layer's input: emitted from the running channel count.
INPUT_FIELDS = ("in_channels", "in_features", "num_features")


def square(value):
    """(k, k) -> k; any other pair stays a tuple."""
    value = tuple(value)
    return value[0] if len(value) == 2 and value[0] == value[1] else value


def padding_mode(padding) -> str:
    """"same" (TensorFlow's rule), "sym" (equal top/bottom and left/right) or "asym"."""
    if padding == S.SAME:
        return "same"
    t, b, l, r = padding
    return "sym" if (t == b and l == r) else "asym"


def sym_padding(padding):
    """Symmetric (t, b, l, r) as an int (all equal) or (h, w)."""
    t, _, l, _ = padding
    return t if t == l else (t, l)


def pool_mode(node) -> str:
    """How a pool is realised: "plain" (the framework's pool with its own symmetric
    padding of at most half the kernel), "same" (TensorFlow's rule, resolved per input
    size) or "padded" (explicit padding, any per-side amounts)."""
    mode = padding_mode(node.padding)
    if mode == "same":
        return "same"
    if mode == "sym" and all(p <= k // 2 for p, k in zip((node.padding[0], node.padding[2]), node.kernel)):
        return "plain"
    return "padded"


def _conv(node: S.Conv2d, info) -> Tuple[tuple, Dict[str, object]]:
    mode = padding_mode(node.padding)
    fields = {"in_channels": info.in_shape[0], "out_channels": node.out_channels, "kernel": square(node.kernel),
              "stride": square(node.stride)}
    if mode == "sym":
        fields["padding"] = sym_padding(node.padding)
    elif mode == "asym":
        fields["padding"] = tuple(node.padding)
    fields.update(dilation=square(node.dilation), groups=node.groups)
    return ("Conv2d", mode, node.bias), fields


def _pool(node, info) -> Tuple[tuple, Dict[str, object]]:
    mode = pool_mode(node)
    fields = {"kernel": square(node.kernel), "stride": square(node.stride)}
    if mode == "plain":
        fields["padding"] = sym_padding(node.padding)
    elif mode == "padded":
        fields["padding"] = tuple(node.padding)
    fields["ceil_mode"] = node.ceil_mode
    if isinstance(node, S.AvgPool):
        fields["count_include_pad"] = node.count_include_pad
    return (type(node).__name__, mode), fields


def describe(node: S.Node, info: shapes.NodeInfo) -> Tuple[tuple, Dict[str, object]]:
    """(structure, fields) of a leaf; a Shared node's structure is filled in by the
    caller (its target relative to the block)."""
    if isinstance(node, S.Conv2d):
        return _conv(node, info)
    if isinstance(node, (S.MaxPool, S.AvgPool)):
        return _pool(node, info)
    if isinstance(node, S.Dense):
        return ("Dense", node.bias), {"in_features": info.in_shape[0], "out_features": node.out_features}
    if isinstance(node, S.BatchNorm):
        return (("BatchNorm", node.affine, node.unbiased_running_var, len(info.in_shape)),
                {"num_features": info.in_shape[0], "eps": node.eps, "momentum": node.momentum})
    if isinstance(node, S.Activation):
        return ("Activation", node.kind, len(info.in_shape)), {}
    if isinstance(node, S.GlobalAvgPool):
        return ("GlobalAvgPool", node.keepdims), {}
    if isinstance(node, S.AdaptiveAvgPool):
        return ("AdaptiveAvgPool",), {"output_size": square(node.output_size)}
    if isinstance(node, S.ZeroPad):
        return ("ZeroPad",), {"padding": tuple(node.padding)}
    if isinstance(node, S.Dropout):
        return ("Dropout",), {"rate": node.rate}
    if isinstance(node, (S.Flatten, S.Identity, S.Shared)):
        return (type(node).__name__,), {}
    raise TypeError(f"node {info.path!r}: code generation does not know node type {type(node).__name__}")


def label(node: S.Node) -> str:
    """A few words for a block's docstring: "conv 3x3/2", "bn", "relu", "maxpool 3x3/2"."""
    def size(k):
        k = square(k)
        return f"{k}x{k}" if isinstance(k, int) else f"{k[0]}x{k[1]}"

    def stride(s):
        s = square(s)
        return "" if s == 1 else f"/{s}" if isinstance(s, int) else f"/{s[0]}x{s[1]}"

    if isinstance(node, S.Conv2d):
        return f"conv {size(node.kernel)}{stride(node.stride)}"
    if isinstance(node, (S.MaxPool, S.AvgPool)):
        kind = "maxpool" if isinstance(node, S.MaxPool) else "avgpool"
        return f"{kind} {size(node.kernel)}{stride(node.stride)}"
    if isinstance(node, S.BatchNorm):
        return "bn"
    if isinstance(node, S.Activation):
        return node.kind
    if isinstance(node, S.Dense):
        return "dense"
    if isinstance(node, S.Shared):
        return f"{node.target} again"
    return {"GlobalAvgPool": "global avgpool", "AdaptiveAvgPool": "adaptive avgpool", "ZeroPad": "zero pad",
            "Flatten": "flatten", "Dropout": "dropout", "Identity": "identity"}[type(node).__name__]
