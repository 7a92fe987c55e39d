"""The framework-neutral layer vocabulary and its combinators.

A model is a tree of small frozen dataclasses. Leaves are layers; `Sequential`
and `Parallel` combine them. Every value on which frameworks differ is an explicit
field here (padding per side, pooling `ceil_mode` / `count_include_pad`, whether
a pad is a zero pad or a pool's own -inf/excluded pad, BatchNorm `eps` and
`momentum`, conv `bias`), never a framework default.

Conventions:
- Activations are channels-first: a feature map is (C, H, W), a vector (F,).
- Padding is always (top, bottom, left, right).
- `BatchNorm.momentum` uses PyTorch's convention: the weight of the *new* batch
  statistic in the running average (Keras / Gluon momentum = 1 - momentum).
- `BatchNorm.unbiased_running_var`: the training-mode update of the running
  variance uses the unbiased batch variance (n/(n-1), PyTorch's rule) or the
  biased one (Keras's and MXNet's own rule); normalisation always uses the biased one.
- A node's path is its parents' names and its own joined by dots; a child of a
  container without a name is addressed by its index. Parameter names are
  `<path>.<param>`.

This module imports no framework.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterator, Literal, Tuple, Union

Pad4 = Tuple[int, int, int, int]
Pair = Tuple[int, int]

# TensorFlow's size-dependent 'same' padding, as a rule rather than numbers: along
# each axis the output has ceil(size / stride) cells and the total padding
# max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0) is split with the
# smaller half on top / left (`rules.resolve_padding`). A conv zero-pads; a max pool's
# padding never wins; an average pool with this padding should not count it
# (`count_include_pad=False`, TensorFlow's rule).
SAME = "same"
Padding = Union[Pad4, Literal["same"]]


def pair(value: Union[int, Pair]) -> Pair:
    """An int or a 2-tuple as a 2-tuple of ints."""
    if isinstance(value, int):
        return (value, value)
    h, w = value
    return (int(h), int(w))


def pad4(value: Union[int, Pair, Pad4, str]):
    """An int, (h, w) or (top, bottom, left, right) as (top, bottom, left, right);
    "same" stays the rule `SAME`."""
    if value == SAME:
        return SAME
    if isinstance(value, int):
        return (value, value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) == 2:
        return (value[0], value[0], value[1], value[1])
    if len(value) == 4:
        return value  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, (h, w) or (top, bottom, left, right), got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Node:
    """Base of every spec node. `name` is the node's segment in dotted paths."""

    name: str = ""

    @property
    def has_params(self) -> bool:
        return False


# --------------------------------------------------------------------------- layers


@dataclass(frozen=True, kw_only=True)
class Conv2d(Node):
    out_channels: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Padding = (0, 0, 0, 0)  # zero padding, per side, or SAME
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = True

    @property
    def has_params(self) -> bool:
        return True


@dataclass(frozen=True, kw_only=True)
class Dense(Node):
    out_features: int
    bias: bool = True

    @property
    def has_params(self) -> bool:
        return True


@dataclass(frozen=True, kw_only=True)
class BatchNorm(Node):
    """Inference: (x - running_mean) / sqrt(running_var + eps) * weight + bias.

    Training: the same with the batch's mean and biased variance over N, H, W in
    place of the running statistics, which are then updated:
    running = (1 - momentum) * running + momentum * batch statistic, where the
    variance's batch statistic is multiplied by n / (n - 1) (n = N*H*W values per
    channel) when `unbiased_running_var` (PyTorch's rule; Keras and MXNet use the
    biased variance unless a backend overrides them, as ours do).

    `affine=False`: no learned scale and shift (weight 1, bias 0), as Gluon's
    `BatchNorm(scale=False, center=False)` on the input of its ResNet v2; the node
    then holds only `running_mean` and `running_var`."""

    eps: float = 1e-5
    momentum: float = 0.1  # PyTorch convention: weight of the new batch statistic
    affine: bool = True
    unbiased_running_var: bool = True

    @property
    def has_params(self) -> bool:
        return True


ActivationKind = Literal["relu", "sigmoid", "tanh", "softmax"]
ACTIVATION_KINDS = ("relu", "sigmoid", "tanh", "softmax")


@dataclass(frozen=True, kw_only=True)
class Activation(Node):
    """An element-wise activation, or "softmax" over the channels (the features of a
    vector, the channel axis of a feature map), as a Keras classifier ends."""

    kind: ActivationKind = "relu"


@dataclass(frozen=True, kw_only=True)
class MaxPool(Node):
    """Max pooling. `padding` is the pool's own padding, which never wins a max
    (-inf), unlike a `ZeroPad` before the pool. `ceil_mode` follows PyTorch: the
    output size is rounded up, but a window that would start in the bottom/right
    padding is dropped."""

    kernel: Pair
    stride: Pair
    padding: Padding = (0, 0, 0, 0)
    ceil_mode: bool = False


@dataclass(frozen=True, kw_only=True)
class AvgPool(Node):
    """Average pooling with PyTorch's divisor rule: with `count_include_pad` the
    divisor counts the padding but not the ceil-mode overhang; without it only
    input elements are counted."""

    kernel: Pair
    stride: Pair
    padding: Padding = (0, 0, 0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True


@dataclass(frozen=True, kw_only=True)
class GlobalAvgPool(Node):
    """Mean over H and W: (C, H, W) -> (C,), or (C, 1, 1) with `keepdims` (a pool
    whose window is the whole map, as `nn.AvgPool2d(x.shape[2])` writes it)."""

    keepdims: bool = False


@dataclass(frozen=True, kw_only=True)
class AdaptiveAvgPool(Node):
    """PyTorch's adaptive average pool: output cell i averages input rows
    floor(i*H/oh) .. ceil((i+1)*H/oh) - 1 (and likewise for columns)."""

    output_size: Pair


@dataclass(frozen=True, kw_only=True)
class ZeroPad(Node):
    padding: Pad4


@dataclass(frozen=True, kw_only=True)
class Flatten(Node):
    """(C, H, W) -> (C*H*W,) in C, H, W order."""


@dataclass(frozen=True, kw_only=True)
class Dropout(Node):
    """Identity in inference mode. In training mode each framework draws its mask
    from its own random generator, so no two backends agree on it: the parity
    training runs replace every Dropout by an Identity (`without_dropout`)."""

    rate: float = 0.5


# ---------------------------------------------------------------------- combinators


@dataclass(frozen=True, kw_only=True)
class Identity(Node):
    """Passes its input through (a residual shortcut, say)."""


@dataclass(frozen=True, kw_only=True)
class Shared(Node):
    """Applies the parameterised layer at spec path `target` (conv, dense or
    BatchNorm, earlier in execution order) once more, with the same weights: a
    user's module reused for several branches. The weights have one canonical
    entry, under `target`; every backend builds the layer once and calls it twice."""

    target: str


@dataclass(frozen=True, kw_only=True)
class Sequential(Node):
    children: Tuple[Node, ...] = field(default_factory=tuple)


MergeKind = Literal["concat", "add"]


@dataclass(frozen=True, kw_only=True)
class Parallel(Node):
    """Every branch gets the same input; outputs are merged by channel `concat`
    (in branch order) or element-wise `add`."""

    branches: Tuple[Node, ...] = field(default_factory=tuple)
    merge: MergeKind = "concat"


CONTAINERS = (Sequential, Parallel)


def children_of(node: Node) -> Tuple[Node, ...]:
    if isinstance(node, Sequential):
        return node.children
    if isinstance(node, Parallel):
        return node.branches
    return ()


def child_segment(child: Node, index: int) -> str:
    return child.name or str(index)


def join(prefix: str, segment: str) -> str:
    return f"{prefix}.{segment}" if prefix else segment


def walk(node: Node, prefix: str = "") -> Iterator[Tuple[str, Node]]:
    """(path, node) in execution order: a container comes after its children.
    The root is yielded with the path `prefix` ("" for a model's root)."""
    for index, child in enumerate(children_of(node)):
        yield from walk(child, join(prefix, child_segment(child, index)))
    yield prefix, node


def validate(node: Node) -> None:
    """Raise ValueError if sibling segments collide, a name holds a dot, or a
    `Shared` node's target is not a parameterised layer that runs before it."""
    seen = {}
    for path, current in walk(node):
        if isinstance(current, Shared):
            target = seen.get(current.target)
            if target is None or not target.has_params:
                raise ValueError(f"shared node {path!r}: its target {current.target!r} is not a parameterised "
                                 f"layer that runs before it")
        seen[path] = current
        segments = [child_segment(c, i) for i, c in enumerate(children_of(current))]
        for child in children_of(current):
            if "." in child.name or "/" in child.name:
                raise ValueError(f"node name {child.name!r} under {path or '<root>'!r} may not contain '.' or '/'")
        duplicates = sorted({s for s in segments if segments.count(s) > 1})
        if duplicates:
            raise ValueError(f"duplicate child names {duplicates} under {path or '<root>'!r}")


# ------------------------------------------------------------------------- the model


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A named architecture with its default input shape (C, H, W)."""

    name: str
    root: Node
    input_shape: Tuple[int, int, int]
    options: Tuple[Tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        validate(self.root)

    def walk(self) -> Iterator[Tuple[str, Node]]:
        return walk(self.root)

    def with_input_shape(self, input_shape) -> "ModelSpec":
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3:
            raise ValueError(f"input shape must be C,H,W, got {input_shape!r}")
        return ModelSpec(name=self.name, root=self.root, input_shape=shape, options=self.options)


def input_sources(node: Node, prefix: str = "", source: str | None = None) -> dict:
    """path -> path of the node whose output feeds it (None: the model input).
    A Sequential's first child is fed by the Sequential's own source; a later
    child by its previous sibling; every Parallel branch by the Parallel's source."""
    sources = {prefix: source}
    current = source
    for index, child in enumerate(children_of(node)):
        path = join(prefix, child_segment(child, index))
        sources.update(input_sources(child, path, current if isinstance(node, Sequential) else source))
        if isinstance(node, Sequential):
            current = path
    return sources


def replace(node: Node, path: str, update) -> Node:
    """A copy of the tree with the node at `path` replaced by `update(node)`:
    how a variant (or a deliberately faulty copy) of a model is made."""
    if path == "":
        return update(node)
    head, _, rest = path.partition(".")
    kids = list(children_of(node))
    for index, child in enumerate(kids):
        if child_segment(child, index) == head:
            kids[index] = replace(child, rest, update)
            field_name = "children" if isinstance(node, Sequential) else "branches"
            return dataclasses.replace(node, **{field_name: tuple(kids)})
    raise KeyError(f"no node {head!r} under {node.name or '<root>'!r}")


def find(node: Node, path: str) -> Node:
    for current_path, current in walk(node):
        if current_path == path:
            return current
    raise KeyError(f"no node {path!r}")


def without_dropout(model: ModelSpec) -> Tuple[ModelSpec, Tuple[str, ...]]:
    """The model with every Dropout node replaced by an Identity of the same name
    (for training-mode comparisons, where dropout masks cannot be shared across
    frameworks), and the paths of the replaced nodes."""
    paths = tuple(path for path, node in model.walk() if isinstance(node, Dropout))
    root = model.root
    for path in paths:
        root = replace(root, path, lambda node: Identity(name=node.name))
    return dataclasses.replace(model, root=root), paths
