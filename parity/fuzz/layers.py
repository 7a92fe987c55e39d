"""Random single nodes and small branch blocks, drawn for a given input shape.

Each function draws one node (or a Parallel block) of the vocabulary with random
settings: kernels, strides, dilations, groups, zero / asymmetric / 'same' padding,
ceil_mode, count_include_pad, BatchNorm eps and affine, add / concat branches,
shared layers. It may draw an invalid node; the grower checks every node with the
spec's shape inference and draws again.
"""

from __future__ import annotations

import random
from typing import Tuple

from refnets import spec as S

EPSILONS = (1e-5, 1e-3, 1e-1, 1e-8, 2.0)


def _pair(rng: random.Random, lo: int, hi: int, square: float = 0.6) -> Tuple[int, int]:
    a = rng.randint(lo, hi)
    return (a, a) if rng.random() < square else (a, rng.randint(lo, hi))


def _padding(rng: random.Random, limit: Tuple[int, int], allow_same: bool = True):
    """Zero, symmetric, asymmetric per side, or 'same'; each side below `limit` (h, w)."""
    choice = rng.random()
    if allow_same and choice < 0.25:
        return S.SAME
    if choice < 0.45:
        return (0, 0, 0, 0)
    if choice < 0.7:
        h, w = rng.randint(0, limit[0]), rng.randint(0, limit[1])
        return (h, h, w, w)
    return (rng.randint(0, limit[0]), rng.randint(0, limit[0]), rng.randint(0, limit[1]), rng.randint(0, limit[1]))


def conv(grower, shape, stride=None, padding=None) -> S.Conv2d:
    rng = grower.rng
    channels = shape[0]
    groups = rng.choice([g for g in range(1, channels + 1) if channels % g == 0]) if rng.random() < 0.3 else 1
    kernel = _pair(rng, 1, 5)
    dilation = _pair(rng, 1, 3) if rng.random() < 0.25 else (1, 1)
    stride = stride or (_pair(rng, 1, 3) if rng.random() < 0.35 else (1, 1))
    if padding is None:
        padding = _padding(rng, (kernel[0], kernel[1]))
    return S.Conv2d(name=grower.fresh("conv"), out_channels=groups * rng.randint(1, max(1, 8 // groups)),
                    kernel=kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                    bias=rng.random() < 0.7)


def pool(grower, shape, stride=None, padding=None):
    rng = grower.rng
    kernel = _pair(rng, 1, 4)
    stride = stride or _pair(rng, 1, 3)
    if padding is None:
        padding = _padding(rng, (kernel[0] - 1, kernel[1] - 1))
    if rng.random() < 0.5:
        return S.MaxPool(name=grower.fresh("max"), kernel=kernel, stride=stride, padding=padding,
                         ceil_mode=rng.random() < 0.4)
    count = padding != S.SAME and rng.random() < 0.5
    return S.AvgPool(name=grower.fresh("avg"), kernel=kernel, stride=stride, padding=padding,
                     ceil_mode=rng.random() < 0.4, count_include_pad=count)


def batchnorm(grower, shape) -> S.BatchNorm:
    rng = grower.rng
    return S.BatchNorm(name=grower.fresh("bn"), eps=rng.choice(EPSILONS), affine=rng.random() < 0.7)


def activation(grower, shape) -> S.Activation:
    weights = (0.4, 0.2, 0.2, 0.2)
    return S.Activation(name=grower.fresh("act"), kind=grower.rng.choices(S.ACTIVATION_KINDS, weights)[0])


def zero_pad(grower, shape) -> S.ZeroPad:
    rng = grower.rng
    return S.ZeroPad(name=grower.fresh("pad"), padding=tuple(rng.randint(0, 3) for _ in range(4)))


def adaptive(grower, shape) -> S.AdaptiveAvgPool:
    rng = grower.rng
    return S.AdaptiveAvgPool(name=grower.fresh("adapt"), output_size=(rng.randint(1, shape[1] + 2),
                                                                      rng.randint(1, shape[2] + 2)))


def plain(grower, shape):
    rng = grower.rng
    if rng.random() < 0.5:
        return S.Identity(name=grower.fresh("id"))
    return S.Dropout(name=grower.fresh("drop"), rate=rng.choice((0.1, 0.5)))


def shared(grower, shape):
    targets = grower.shared_targets()
    if not targets:
        return None
    return S.Shared(name=grower.fresh("shared"), target=grower.rng.choice(targets))


MAP_LEAVES = ((conv, 5), (pool, 3), (batchnorm, 2), (activation, 2), (zero_pad, 1), (adaptive, 1), (plain, 1),
              (shared, 1))


def map_node(grower, shape):
    """A node on a (C, H, W) feature map: a leaf, or a Parallel block."""
    rng = grower.rng
    if rng.random() < 0.2:
        return parallel(grower, shape)
    fns, weights = zip(*MAP_LEAVES)
    return rng.choices(fns, weights)[0](grower, shape)


def parallel(grower, shape) -> S.Parallel:
    """Two or three branches merged by channel concat or element-wise add. Branches
    keep the spatial size, or all start with a stride-2 'same' op (so they agree);
    an add block keeps the channels too. One block in four reuses its first
    branch's conv in its last branch (weight sharing inside the block)."""
    rng = grower.rng
    merge = rng.choice(("add", "concat"))
    stride = (2, 2) if rng.random() < 0.3 else (1, 1)
    name = grower.fresh("par")
    branches = []
    for b in range(rng.randint(2, 3)):
        branches.append(_branch(grower, shape, merge, stride, f"b{b}"))
    if rng.random() < 0.25 and isinstance(branches[0], S.Conv2d) and stride == (1, 1):
        target = f"{name}.{branches[0].name}"
        tail = S.Sequential(name="twin", children=(activation(grower, shape),
                                                    S.Shared(name="again", target=target)))
        branches[-1] = tail
    return S.Parallel(name=name, branches=tuple(branches), merge=merge)


def _branch(grower, shape, merge: str, stride, name: str) -> S.Node:
    rng = grower.rng
    channels = shape[0] if merge == "add" else rng.randint(1, 6)
    first = None
    if stride != (1, 1) or rng.random() < 0.6:
        choice = rng.random()
        if choice < 0.6:
            first = conv(grower, shape, stride=stride, padding=S.SAME)
            first = S.Conv2d(**{**_fields(first), "out_channels": channels, "groups": 1})
        else:
            first = pool(grower, shape, stride=stride, padding=S.SAME)
    elif stride == (1, 1) and merge == "concat":
        return S.Identity(name=name) if rng.random() < 0.3 else conv(grower, shape, padding=S.SAME)
    extra = [fn(grower, shape) for fn in rng.sample((batchnorm, activation), rng.randint(0, 2))]
    nodes = ([first] if first is not None else []) + extra
    if not nodes:
        return S.Identity(name=name)
    if len(nodes) == 1:
        return nodes[0]
    return S.Sequential(name=name, children=tuple(nodes))


def _fields(node: S.Node) -> dict:
    return {f: getattr(node, f) for f in node.__dataclass_fields__}


def vector_node(grower, shape):
    """A node on a vector: dense, BatchNorm, activation, dropout, a shared dense or an add block."""
    rng = grower.rng
    choice = rng.random()
    if choice < 0.5:
        return S.Dense(name=grower.fresh("fc"), out_features=rng.randint(1, 10), bias=rng.random() < 0.8)
    if choice < 0.65:
        return batchnorm(grower, shape)
    if choice < 0.8:
        return activation(grower, shape)
    if choice < 0.9:
        return shared(grower, shape)
    name = grower.fresh("vpar")
    dense = S.Dense(name="fc", out_features=shape[0])
    return S.Parallel(name=name, merge="add", branches=(S.Identity(name="skip"), dense))
