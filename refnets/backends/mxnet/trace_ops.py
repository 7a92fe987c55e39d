"""MXNet operators -> spec leaves, for the Gluon tracer (`trace`).

Each converter gets one `OpNode` (an operator of the traced Symbol with its
attributes as MXNet writes them, its input shapes and the Gluon parameters it
reads) and returns the `TracedOp`s it becomes, or an `Alias` for an operator
that passes its input through (identity, BlockGrad, a flatten of a vector).
Anything else raises `untraceable`, naming the operator and the Gluon block.

MXNet facts the mapping rests on (mxnet 1.9.1):
- BatchNorm's momentum is the weight of the *old* running value (spec momentum =
  1 - it) and its running variance is updated with the biased batch variance;
  `fix_gamma=True` ignores gamma (Gluon's `scale=False`), beta is always added.
- Pooling's 'full' convention rounds the output size up but, unlike PyTorch's
  ceil mode, keeps a last window that starts in the bottom/right padding (it
  yields -FLT_MAX for a max pool, 0 for an average). The tracer compares every
  output shape with MXNet's own, so such a pool is refused rather than mistraced.
- A global pool keeps its 1x1 spatial dims: GlobalAvgPool(keepdims=True).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from ... import spec as S
from ...trace.graph import TracedOp, untraceable
from .read import batchnorm_affine


@dataclass
class Param:
    """A Gluon parameter read by an operator, and the block that holds it."""

    param: object  # mxnet.gluon.Parameter
    owner: str

    def array(self, dtype: str) -> np.ndarray:
        return self.param.data().asnumpy().astype(dtype)


@dataclass
class OpNode:
    """One operator of the traced graph. `inputs[i]` is the id of the value it
    reads (an op id or `graph.INPUT`) or None where it reads a parameter
    (`params[i]`) or a constant array."""

    id: str
    op: str
    attrs: Dict[str, str]
    layer: str  # the Gluon block that ran it, for messages
    inputs: List[Optional[str]]
    params: List[Optional[Param]]
    in_shapes: List[Tuple[int, ...]]  # with the batch axis
    out_shape: Tuple[int, ...]
    dtype: str = "float32"
    at_other_batch: Optional[Dict[str, str]] = None  # a recorded op's attributes when run at batch size + 1

    def refuse(self, detail: str = ""):
        return untraceable(self.op, self.layer, detail)

    def attr(self, key: str, default=None):
        """An attribute parsed from MXNet's string form ('(3, 3)', 'True', '0.9', 'None')."""
        text = self.attrs.get(key)
        if text is None or text == "None":
            return default
        if text in ("True", "False"):
            return text == "True"
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text

    def pair(self, key: str, default: Tuple[int, int]) -> Tuple[int, int]:
        value = self.attr(key, default)
        value = (value,) if isinstance(value, int) else tuple(value or default)
        if len(value) != 2:
            raise self.refuse(f"{key}={value}: only 2-D (NCHW) operators are in the vocabulary")
        return (int(value[0]), int(value[1]))

    def data(self, count: int = 1) -> List[str]:
        """The ids of the first `count` inputs, which must be tensors (not parameters)."""
        sources = self.inputs[:count]
        if any(source is None for source in sources):
            raise self.refuse("its data input is a parameter or a constant array")
        return sources

    def weights(self, roles: Dict[int, str]) -> Tuple[Dict[str, np.ndarray], str]:
        """Canonical role -> array for the inputs at the given positions, and their owner."""
        found = {}
        for index, role in roles.items():
            param = self.params[index] if index < len(self.params) else None
            if param is None:
                raise self.refuse(f"its {role} is not a Gluon parameter (a computed or constant array)")
            found[role] = param.array(self.dtype)
        return found, self.params[min(roles)].owner

    def emit(self, node: S.Node, *, weights=None, owner: str = "", suffix: str = "",
           inputs: Optional[Tuple[str, ...]] = None) -> TracedOp:
        return TracedOp(self.id + suffix, tuple(inputs if inputs is not None else self.data()), node=node,
                        weights=weights or {}, owner=owner)

    @property
    def rank(self) -> int:
        return len(self.in_shapes[0]) if self.in_shapes else 0


@dataclass(frozen=True)
class Alias:
    """The operator passes its input (this id) through."""

    source: str


Result = Union[Alias, List[TracedOp]]
CONVERTERS: Dict[str, Callable[[OpNode], Result]] = {}


def converts(*ops: str):
    def register(fn):
        CONVERTERS.update({op: fn for op in ops})
        return fn
    return register


def convert(node: OpNode) -> Result:
    converter = CONVERTERS.get(node.op)
    if converter is None:
        raise node.refuse()
    return converter(node)


def _check_layout(node: OpNode) -> None:
    if node.attr("layout", "NCHW") != "NCHW":
        raise node.refuse(f"layout {node.attrs['layout']}: only NCHW is in the vocabulary")


@converts("Convolution")
def _conv(node: OpNode) -> Result:
    _check_layout(node)
    kernel = node.pair("kernel", (0, 0))
    ph, pw = node.pair("pad", (0, 0))
    bias = not node.attr("no_bias", False)
    weights, owner = node.weights({1: "weight", 2: "bias"} if bias else {1: "weight"})
    conv = S.Conv2d(out_channels=int(node.attr("num_filter")), kernel=kernel, stride=node.pair("stride", (1, 1)),
                    padding=(ph, ph, pw, pw), dilation=node.pair("dilate", (1, 1)),
                    groups=int(node.attr("num_group", 1)), bias=bias)
    return [node.emit(conv, weights=weights, owner=owner)]


@converts("FullyConnected")
def _dense(node: OpNode) -> Result:
    bias = not node.attr("no_bias", False)
    weights, owner = node.weights({1: "weight", 2: "bias"} if bias else {1: "weight"})
    dense = S.Dense(out_features=int(node.attr("num_hidden")), bias=bias)
    if node.rank == 2:
        return [node.emit(dense, weights=weights, owner=owner)]
    if node.rank == 4 and node.attr("flatten", True):
        flatten = node.emit(S.Flatten(), suffix=".flatten")
        return [flatten, node.emit(dense, weights=weights, owner=owner, suffix="", inputs=(flatten.id,))]
    raise node.refuse(f"a dense layer on a {node.rank}-D input with flatten={node.attr('flatten', True)}: the "
                      f"vocabulary's Dense reads a vector (flatten=True flattens a feature map first)")


@converts("BatchNorm")
def _batchnorm(node: OpNode) -> Result:
    if node.attr("axis", 1) != 1:
        raise node.refuse(f"axis={node.attrs['axis']}: the vocabulary normalises the channel axis 1")
    if node.attr("use_global_stats", False):
        raise node.refuse("use_global_stats=True (running statistics even in training) is not a spec BatchNorm")
    beta = node.params[2] if len(node.params) > 2 else None
    if beta is None:
        raise node.refuse("its beta is not a Gluon parameter")
    scale = not node.attr("fix_gamma", True)  # the operator's own default is fix_gamma=True
    center = bool(getattr(beta.param, "_differentiable", True))
    affine = batchnorm_affine(scale, center, beta.array("float64"))
    if not isinstance(affine, bool):
        raise node.refuse(f"a BatchNorm with only part of its affine transform ({affine}): the vocabulary has "
                          f"both scale and shift or neither")
    roles = {1: "weight", 2: "bias"} if affine else {}
    weights, owner = node.weights({**roles, 3: "running_mean", 4: "running_var"})
    momentum = float(Decimal("1") - Decimal(str(node.attr("momentum", 0.9))))
    bn = S.BatchNorm(eps=float(node.attr("eps", 1e-3)), momentum=momentum, affine=affine,
                     unbiased_running_var=False)
    return [node.emit(bn, weights=weights, owner=owner)]


ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}


@converts("Activation")
def _activation(node: OpNode) -> Result:
    kind = ACTIVATIONS.get(node.attr("act_type"))
    if kind is None:
        raise node.refuse(f"act_type={node.attrs.get('act_type')}")
    return [node.emit(S.Activation(kind=kind))]


@converts("relu", "sigmoid", "tanh")
def _activation_op(node: OpNode) -> Result:
    return [node.emit(S.Activation(kind=ACTIVATIONS[node.op]))]


@converts("softmax", "SoftmaxActivation")
def _softmax(node: OpNode) -> Result:
    if node.op == "softmax":
        if node.attr("temperature") not in (None, 1, 1.0) or node.attr("use_length", False):
            raise node.refuse("a softmax with a temperature or lengths")
        axis = node.attr("axis", -1)
        channel = axis in (1, 1 - node.rank)
    else:
        channel = node.rank == 2 or node.attr("mode", "instance") == "channel"
        axis = node.attr("mode", "instance")
    if not channel:
        raise node.refuse(f"a softmax over {axis!r} of a {node.rank}-D input: the vocabulary's softmax is over "
                          f"the channel axis")
    return [node.emit(S.Activation(kind="softmax"))]


@converts("Pooling")
def _pool(node: OpNode) -> Result:
    _check_layout(node)
    kind = node.attr("pool_type", "max")
    if kind not in ("max", "avg"):
        raise node.refuse(f"pool_type={kind}")
    if node.attr("global_pool", False):
        if kind != "avg":
            raise node.refuse("a global max pool: the vocabulary has global average pooling only")
        return [node.emit(S.GlobalAvgPool(keepdims=True))]
    convention = node.attr("pooling_convention", "valid")
    if convention not in ("valid", "full"):
        raise node.refuse(f"pooling_convention={convention!r}: the vocabulary has 'valid' (floor) and 'full' "
                          f"(ceil mode)")
    ph, pw = node.pair("pad", (0, 0))
    common = dict(kernel=node.pair("kernel", (0, 0)), stride=node.pair("stride", (1, 1)),
                  padding=(ph, ph, pw, pw), ceil_mode=convention == "full")
    if kind == "max":
        return [node.emit(S.MaxPool(**common))]
    return [node.emit(S.AvgPool(**common, count_include_pad=bool(node.attr("count_include_pad", True))))]


@converts("Concat", "concat")
def _concat(node: OpNode) -> Result:
    if node.attr("dim", 1) != 1:
        raise node.refuse(f"a concat along dim {node.attrs['dim']}: the vocabulary concatenates channels (dim 1)")
    sources = node.data(len(node.inputs))
    if len(sources) == 1:
        return Alias(sources[0])
    return [TracedOp(node.id, tuple(sources), merge="concat")]


@converts("elemwise_add", "_plus", "_Plus", "_add", "broadcast_add", "add_n", "ElementWiseSum", "_grad_add")
def _add(node: OpNode) -> Result:
    sources = node.data(len(node.inputs))
    if len(sources) < 2 or any(shape != node.in_shapes[0] for shape in node.in_shapes):
        raise node.refuse(f"an add of shapes {node.in_shapes}: the vocabulary adds tensors of one shape")
    return [TracedOp(node.id, tuple(sources), merge="add")]


@converts("Flatten", "flatten")
def _flatten(node: OpNode) -> Result:
    if node.rank == 2:
        return Alias(node.data()[0])
    return [node.emit(S.Flatten())]


@converts("Reshape", "reshape")
def _reshape(node: OpNode) -> Result:
    shape = tuple(node.attr("shape", ()))
    batch, *rest = node.in_shapes[0]
    if tuple(node.out_shape) == tuple(node.in_shapes[0]):
        return Alias(node.data()[0])
    keeps_batch = len(shape) == 2 and shape[0] in (0, -1) and not node.attr("reverse", False)
    if node.at_other_batch is not None:  # recorded: NDArray.reshape resolved the shape at each batch size
        other = tuple(ast.literal_eval(node.at_other_batch.get("shape", "()")))
        keeps_batch = keeps_batch or (len(shape) == len(other) == 2 and shape[0] == batch
                                      and other == (batch + 1, shape[1]))
    if node.rank == 4 and keeps_batch and tuple(node.out_shape) == (batch, int(np.prod(rest))):
        return [node.emit(S.Flatten())]
    raise node.refuse(f"a reshape to {shape}: the vocabulary reshapes only by flattening a feature map")


@converts("Dropout")
def _dropout(node: OpNode) -> Result:
    if node.attr("mode", "training") != "training" or tuple(node.attr("axes", ()) or ()):
        raise node.refuse("dropout in inference (mode='always') or over whole axes is not a spec Dropout")
    return [node.emit(S.Dropout(rate=float(node.attr("p", 0.5))))]


@converts("pad", "Pad")
def _pad(node: OpNode) -> Result:
    width = tuple(node.attr("pad_width", ()))
    if node.attr("mode", "constant") != "constant" or float(node.attr("constant_value", 0)) != 0.0:
        raise node.refuse("a pad that is not a constant zero pad")
    if len(width) != 8 or any(width[:4]):
        raise node.refuse(f"pad_width={width}: the vocabulary pads H and W of a feature map")
    return [node.emit(S.ZeroPad(padding=tuple(int(v) for v in width[4:])))]


@converts("identity", "_copy", "BlockGrad", "stop_gradient")
def _identity(node: OpNode) -> Result:
    return Alias(node.data()[0])
