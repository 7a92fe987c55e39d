"""Spec -> the numpy reference's native model: a tree of plain Python objects.

`NumpyModel` holds the spec, the dtype, the parameter arrays under their
canonical names, and the node tree. Leaves are `Leaf` objects made by one
converter per node type (`converters`, a registry: `Converters.convert`); each
holds a `forward(params, x, train) -> (y, cache)` and a
`backward(params, cache, dy) -> (dx, {role: grad})` built from `ops`.
Containers are `Seq` and `Par`. A `Shared` node's leaf runs its target's
forward and backward on the target's parameters (`Leaf.owner`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import numpy as np

from ... import rules, shapes
from ... import spec as S
from ...shapes import NodeInfo
from ..base import Converters
from . import ops

converters = Converters("numpy")


class DropoutInTrainingError(ValueError):
    """A Dropout node was run in training mode. Its random mask cannot match any
    framework's, so the reference refuses rather than guess: replace every
    Dropout by an Identity first (`spec.without_dropout`), as the parity
    training runs do. (In inference mode Dropout is the identity.)"""


@dataclass
class Leaf:
    path: str
    info: NodeInfo
    roles: Tuple[str, ...]  # canonical parameter roles held by this node ('' for none)
    forward: Callable  # (params: {role: array}, x, train) -> (y, cache)
    backward: Callable  # (params, cache, dy) -> (dx, {role: grad})
    owner: str = ""  # the path whose canonical parameters it uses: its own, or a Shared node's target

    def __post_init__(self):
        self.owner = self.owner or self.path


@dataclass
class Seq:
    path: str
    info: NodeInfo
    children: List[object] = field(default_factory=list)


@dataclass
class Par:
    path: str
    info: NodeInfo
    merge: str
    branches: List[object] = field(default_factory=list)


@dataclass
class NumpyModel:
    """The numpy backend's native model."""

    spec: S.ModelSpec
    dtype: np.dtype
    params: Dict[str, np.ndarray]  # canonical name -> array (BatchNorm statistics included)
    tree: object
    infos: Dict[str, NodeInfo]

    def params_of(self, leaf: Leaf) -> Dict[str, np.ndarray]:
        return {role: self.params[S.join(leaf.owner, role)] for role in leaf.roles}


def _roles(info: NodeInfo) -> Tuple[str, ...]:
    return tuple(shapes.node_param_shapes(info))


def _no_grads(fn):
    """A backward for a layer without parameters, from ops' `(cache, dy) -> dx`."""
    return lambda params, cache, dy: (fn(cache, dy), {})


# ----------------------------------------------------------------- converters


@converters.register(S.Conv2d)
def conv(node: S.Conv2d, path: str, info: NodeInfo, dtype) -> Leaf:
    out_hw = info.out_shape[1:]
    padding = rules.resolve_padding(node, info.in_shape[1:])

    def forward(p, x, train):
        return ops.conv2d(x, p["weight"], p.get("bias"), node.stride, padding, node.dilation,
                          node.groups, out_hw)

    def backward(p, cache, dy):
        dx, grads = ops.conv2d_backward(cache, dy)
        return dx, {role: grads[role] for role in p}

    return Leaf(path, info, _roles(info), forward, backward)


@converters.register(S.Dense)
def dense(node: S.Dense, path: str, info: NodeInfo, dtype) -> Leaf:
    def backward(p, cache, dy):
        dx, grads = ops.dense_backward(cache, dy)
        return dx, {role: grads[role] for role in p}

    return Leaf(path, info, _roles(info), lambda p, x, train: ops.dense(x, p["weight"], p.get("bias")), backward)


@converters.register(S.BatchNorm)
def batchnorm(node: S.BatchNorm, path: str, info: NodeInfo, dtype) -> Leaf:
    def forward(p, x, train):
        return ops.batchnorm(x, p.get("weight"), p.get("bias"), p["running_mean"], p["running_var"],
                             node.eps, train)

    def backward(p, cache, dy):
        return ops.batchnorm_backward(cache, dy)

    return Leaf(path, info, _roles(info), forward, backward)


@converters.register(S.Activation)
def activation(node: S.Activation, path: str, info: NodeInfo, dtype) -> Leaf:
    return Leaf(path, info, (), lambda p, x, train: ops.activation(x, node.kind),
                _no_grads(ops.activation_backward))


@converters.register(S.MaxPool)
def max_pool(node: S.MaxPool, path: str, info: NodeInfo, dtype) -> Leaf:
    padding = shapes.pool_window_padding(node, info.in_shape[1:])
    out_hw = info.out_shape[1:]
    return Leaf(path, info, (), lambda p, x, train: ops.max_pool(x, node.kernel, node.stride, padding, out_hw),
                _no_grads(ops.max_pool_backward))


@converters.register(S.AvgPool)
def avg_pool(node: S.AvgPool, path: str, info: NodeInfo, dtype) -> Leaf:
    padding = shapes.pool_window_padding(node, info.in_shape[1:])
    divisors = shapes.avgpool_divisors(node, info.in_shape[1:]).astype(dtype)  # exact small integers
    out_hw = info.out_shape[1:]
    return Leaf(path, info, (),
                lambda p, x, train: ops.avg_pool(x, node.kernel, node.stride, padding, out_hw, divisors),
                _no_grads(ops.avg_pool_backward))


@converters.register(S.GlobalAvgPool)
def global_avg_pool(node: S.GlobalAvgPool, path: str, info: NodeInfo, dtype) -> Leaf:
    return Leaf(path, info, (), lambda p, x, train: ops.global_avg_pool(x, node.keepdims),
                _no_grads(ops.global_avg_pool_backward))


@converters.register(S.AdaptiveAvgPool)
def adaptive_avg_pool(node: S.AdaptiveAvgPool, path: str, info: NodeInfo, dtype) -> Leaf:
    (_, h, w), (oh, ow) = info.in_shape, node.output_size
    rows, cols = shapes.adaptive_windows(h, oh), shapes.adaptive_windows(w, ow)
    return Leaf(path, info, (), lambda p, x, train: ops.adaptive_avg_pool(x, rows, cols),
                _no_grads(ops.adaptive_avg_pool_backward))


@converters.register(S.ZeroPad)
def zero_pad(node: S.ZeroPad, path: str, info: NodeInfo, dtype) -> Leaf:
    return Leaf(path, info, (), lambda p, x, train: (ops.pad(x, node.padding), None),
                lambda p, cache, dy: (ops.crop(dy, node.padding), {}))


@converters.register(S.Flatten)
def flatten(node: S.Flatten, path: str, info: NodeInfo, dtype) -> Leaf:
    """(N, C, H, W) -> (N, C*H*W), C-major: numpy's C order is the spec's C, H, W order."""
    return Leaf(path, info, (), lambda p, x, train: (x.reshape(x.shape[0], -1), x.shape),
                lambda p, shape, dy: (dy.reshape(shape), {}))


@converters.register(S.Dropout)
def dropout(node: S.Dropout, path: str, info: NodeInfo, dtype) -> Leaf:
    def forward(p, x, train):
        if train and node.rate > 0:
            raise DropoutInTrainingError(
                f"node {path!r}: the numpy reference does not run Dropout in training mode (no framework's "
                f"random mask can be matched); replace it by an Identity first (spec.without_dropout)")
        return x, None

    return Leaf(path, info, (), forward, lambda p, cache, dy: (dy, {}))


@converters.register(S.Identity)
def identity(node: S.Identity, path: str, info: NodeInfo, dtype) -> Leaf:
    return Leaf(path, info, (), lambda p, x, train: (x, None), lambda p, cache, dy: (dy, {}))


@converters.register(S.Shared)
def shared(node: S.Shared, path: str, info: NodeInfo, dtype, target: Leaf) -> Leaf:
    """The target's leaf again, under this path (its own tape entry and capture),
    on the target's parameters; its parameter gradients add to the target's."""
    return Leaf(path, info, target.roles, target.forward, target.backward, owner=target.owner)


# ----------------------------------------------------------------------- tree


def make_tree(node: S.Node, path: str, infos: Dict[str, NodeInfo], dtype, built=None):
    """The object tree of `node` (at `path`): Seq / Par for combinators, a
    converter's Leaf otherwise. `built` (path -> Leaf, filled in execution order)
    gives a Shared node's converter its target's leaf."""
    built = {} if built is None else built
    if isinstance(node, (S.Sequential, S.Parallel)):
        kids = [make_tree(child, S.join(path, S.child_segment(child, i)), infos, dtype, built)
                for i, child in enumerate(S.children_of(node))]
        if isinstance(node, S.Sequential):
            return Seq(path, infos[path], kids)
        return Par(path, infos[path], node.merge, kids)
    extra = {"target": built[node.target]} if isinstance(node, S.Shared) else {}
    built[path] = converters.convert(node, path, infos[path], dtype, **extra)
    return built[path]


def walk_leaves(tree):
    """Every Leaf of the tree in execution order."""
    if isinstance(tree, Leaf):
        yield tree
        return
    for kid in (tree.children if isinstance(tree, Seq) else tree.branches):
        yield from walk_leaves(kid)
