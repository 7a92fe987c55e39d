"""Aten ops (as `torch.export` records them) -> spec leaves, merges or aliases.

Each mapper reads one call (`Call`: its arguments bound by the op's schema, the
shapes of its tensors from the export's fake tensors) and returns a `Mapped`: the
data values it reads, then a spec leaf (with the parameter placeholders it uses,
by canonical role), a merge, or an alias (an op that does not change the value:
`clone`, a reshape that keeps the shape). An op outside the vocabulary, or one used
with settings the vocabulary cannot express, raises `UntraceableError` naming the op
and the module that holds it. The ops' own defaults come from their schemas, never
from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from ... import spec as S
from ...trace.graph import UntraceableError, untraceable


@dataclass
class Call:
    """One call of an aten op: `op` its full name (for messages), `name` its name
    without namespace and overload ("conv2d"), `args` its arguments by schema name
    (defaults filled in), `layer` the module that holds it, `shape` the shape of a
    value (an fx node) and `out_shape` the shape of its result."""

    op: str
    name: str
    args: Dict[str, Any]
    layer: str
    shape: Callable[[Any], Tuple[int, ...]]
    out_shape: Tuple[int, ...]
    where: str = ""  # the user's source line, for messages

    def fail(self, detail: str = "") -> UntraceableError:
        detail = "; ".join(part for part in (detail, self.where) if part)
        return untraceable(self.op, self.layer, detail)

    def rank(self, value) -> int:
        return len(self.shape(value))


@dataclass
class Mapped:
    """What one call becomes: a spec `node` (with `params`: canonical role -> the
    placeholder that holds it), a `merge`, or (`alias`) its first input unchanged."""

    inputs: Tuple[Any, ...]
    node: Optional[S.Node] = None
    merge: Optional[str] = None
    params: Dict[str, Any] = field(default_factory=dict)
    alias: bool = False


def _pair(value, what: str, call: Call) -> S.Pair:
    values = [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise call.fail(f"{what} {value!r} is not two-dimensional")
    return (values[0], values[1])


def _axis(dim: int, rank: int) -> int:
    return dim + rank if dim < 0 else dim


def _need_rank(call: Call, value, ranks: Tuple[int, ...]) -> None:
    if call.rank(value) not in ranks:
        raise call.fail(f"input of shape {tuple(call.shape(value))}; the vocabulary takes rank "
                        f"{' or '.join(str(r) for r in ranks)} (batch first)")


# ------------------------------------------------------------------ parameterised


def conv_padding(padding, kernel: S.Pair, dilation: S.Pair, call: Call) -> S.Pad4:
    """Per side (top, bottom, left, right). PyTorch's string 'same' (stride 1 only)
    pads dilation * (kernel - 1) in all, the odd cell at the bottom / right."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return (totals[0] // 2, totals[0] - totals[0] // 2, totals[1] // 2, totals[1] - totals[1] // 2)
    return S.pad4(_pair(padding, "padding", call))


def _conv(call: Call, transposed: bool = False) -> Mapped:
    args = call.args
    if transposed:
        raise call.fail("a transposed convolution")
    _need_rank(call, args["input"], (4,))
    out, _, kh, kw = call.shape(args["weight"])
    dilation = _pair(args["dilation"], "dilation", call)
    node = S.Conv2d(out_channels=int(out), kernel=(int(kh), int(kw)), stride=_pair(args["stride"], "stride", call),
                    padding=conv_padding(args["padding"], (int(kh), int(kw)), dilation, call), dilation=dilation,
                    groups=int(args["groups"]), bias=args["bias"] is not None)
    return Mapped((args["input"],), node=node, params={"weight": args["weight"], "bias": args["bias"]})


def conv2d(call: Call) -> Mapped:
    return _conv(call)


def convolution(call: Call) -> Mapped:
    if any(int(p) != 0 for p in call.args.get("output_padding") or ()):
        raise call.fail("output_padding")
    return _conv(call, transposed=bool(call.args["transposed"]))


def batch_norm(call: Call) -> Mapped:
    """Every eval-mode batch-norm variant: normalises with the running statistics."""
    args = call.args
    if args.get("training", False):
        raise call.fail("batch statistics at inference (training mode, or a BatchNorm without running "
                        "statistics)")
    if args["running_mean"] is None or args["running_var"] is None:
        raise call.fail("a BatchNorm without running statistics")
    if (args["weight"] is None) != (args["bias"] is None):
        raise call.fail("a BatchNorm with a scale but no shift (or a shift but no scale)")
    _need_rank(call, args["input"], (2, 4))
    node = S.BatchNorm(eps=float(args["eps"]), momentum=float(args["momentum"]), affine=args["weight"] is not None,
                       unbiased_running_var=True)
    params = {"weight": args["weight"], "bias": args["bias"], "running_mean": args["running_mean"],
              "running_var": args["running_var"]}
    return Mapped((args["input"],), node=node, params=params)


def linear(call: Call) -> Mapped:
    args = call.args
    _need_rank(call, args["input"], (2,))
    out = int(call.shape(args["weight"])[0])
    return Mapped((args["input"],), node=S.Dense(out_features=out, bias=args["bias"] is not None),
                  params={"weight": args["weight"], "bias": args["bias"]})


def addmm(call: Call) -> Mapped:
    """bias + x @ weight.t() (a decomposed linear): the transposed weight is resolved
    by the tracer, which follows `t` back to the parameter."""
    args = call.args
    if args["beta"] != 1 or args["alpha"] != 1 or call.rank(args["self"]) != 1:
        raise call.fail("addmm other than bias + x @ weight.t()")
    _need_rank(call, args["mat1"], (2,))
    out = int(call.shape(args["mat2"])[1])
    return Mapped((args["mat1"],), node=S.Dense(out_features=out, bias=True),
                  params={"weight": args["mat2"], "bias": args["self"]})


# ------------------------------------------------------------------ parameter-free


def activation(kind: str) -> Callable[[Call], Mapped]:
    def mapper(call: Call) -> Mapped:
        return Mapped((call.args["self"],), node=S.Activation(kind=kind))
    return mapper


def softmax(call: Call) -> Mapped:
    x = call.args["self"]
    _need_rank(call, x, (2, 4))
    if _axis(int(call.args["dim"]), call.rank(x)) != 1:
        raise call.fail(f"softmax over dim {call.args['dim']}; the vocabulary's softmax is over the channels")
    return Mapped((x,), node=S.Activation(kind="softmax"))


def _pool_args(call: Call) -> Tuple[S.Pair, S.Pair, S.Pad4]:
    kernel = _pair(call.args["kernel_size"], "kernel", call)
    stride = _pair(call.args["stride"], "stride", call) if call.args["stride"] else kernel
    return kernel, stride, S.pad4(_pair(call.args["padding"], "padding", call))


def max_pool2d(call: Call) -> Mapped:
    x = call.args["self"]
    _need_rank(call, x, (4,))
    if _pair(call.args["dilation"], "dilation", call) != (1, 1):
        raise call.fail("a dilated max pool")
    kernel, stride, padding = _pool_args(call)
    node = S.MaxPool(kernel=kernel, stride=stride, padding=padding, ceil_mode=bool(call.args["ceil_mode"]))
    return Mapped((x,), node=node)


def avg_pool2d(call: Call) -> Mapped:
    """A window over the whole unpadded map is a global pool whatever the size
    (`nn.AvgPool2d(x.shape[2])` in a forward)."""
    x = call.args["self"]
    _need_rank(call, x, (4,))
    if call.args["divisor_override"] is not None:
        raise call.fail("divisor_override")
    kernel, stride, padding = _pool_args(call)
    if padding == (0, 0, 0, 0) and kernel == tuple(call.shape(x)[2:]):
        return Mapped((x,), node=S.GlobalAvgPool(keepdims=True))
    node = S.AvgPool(kernel=kernel, stride=stride, padding=padding, ceil_mode=bool(call.args["ceil_mode"]),
                     count_include_pad=bool(call.args["count_include_pad"]))
    return Mapped((x,), node=node)


def adaptive_avg_pool2d(call: Call) -> Mapped:
    x = call.args["self"]
    _need_rank(call, x, (4,))
    size = _pair(call.args["output_size"], "output_size", call)
    node = S.GlobalAvgPool(keepdims=True) if size == (1, 1) else S.AdaptiveAvgPool(output_size=size)
    return Mapped((x,), node=node)


def mean(call: Call) -> Mapped:
    x = call.args["self"]
    _need_rank(call, x, (4,))
    dims = sorted(_axis(int(d), 4) for d in (call.args["dim"] or ()))
    if dims != [2, 3] or call.args.get("dtype") is not None:
        raise call.fail(f"mean over dims {call.args['dim']}; the vocabulary averages over H and W only")
    return Mapped((x,), node=S.GlobalAvgPool(keepdims=bool(call.args["keepdim"])))


def reshape(call: Call) -> Mapped:
    """view / reshape / flatten / squeeze, judged by shapes: (N, C, H, W) ->
    (N, C*H*W) is a Flatten; a reshape that keeps the shape is no op."""
    x = call.args["self"]
    before, after = tuple(call.shape(x)), tuple(call.out_shape)
    if before == after:
        return Mapped((x,), alias=True)
    if len(before) == 4 and after == (before[0], before[1] * before[2] * before[3]):
        return Mapped((x,), node=S.Flatten())
    raise call.fail(f"a reshape from {before} to {after}; the vocabulary flattens (N, C, H, W) to (N, C*H*W)")


def cat(call: Call) -> Mapped:
    tensors = tuple(call.args["tensors"])
    ranks = {call.rank(t) for t in tensors}
    if len(ranks) != 1 or not ranks <= {2, 4}:
        raise call.fail("a concat of tensors that are not all (N, C, H, W) or all (N, F)")
    if _axis(int(call.args["dim"]), ranks.pop()) != 1:
        raise call.fail(f"a concat along dim {call.args['dim']}; the vocabulary concatenates channels (dim 1)")
    if len(tensors) == 1:
        return Mapped(tensors, alias=True)
    return Mapped(tensors, merge="concat")


def add(call: Call) -> Mapped:
    a, b = call.args["self"], call.args["other"]
    if call.args.get("alpha", 1) != 1:
        raise call.fail(f"alpha={call.args['alpha']}")
    if not (hasattr(a, "op") and hasattr(b, "op")):
        raise call.fail("adding a number; the vocabulary adds two tensors of one shape")
    if tuple(call.shape(a)) != tuple(call.shape(b)):
        raise call.fail(f"a broadcasting add of shapes {tuple(call.shape(a))} and {tuple(call.shape(b))}")
    return Mapped((a, b), merge="add")


def dropout(call: Call) -> Mapped:
    if call.args.get("train"):
        raise call.fail("dropout in training mode")
    return Mapped((call.args["input"],), node=S.Dropout(rate=float(call.args["p"])))


def pad(call: Call) -> Mapped:
    """F.pad / constant_pad_nd with zeros on H and W: (left, right, top, bottom)."""
    x = call.args["self"]
    _need_rank(call, x, (4,))
    if call.args.get("mode", "constant") != "constant" or (call.args.get("value") or 0) != 0:
        raise call.fail(f"{call.args.get('mode', 'constant')} padding with value {call.args.get('value')}; the "
                        f"vocabulary pads with zeros")
    amounts = [int(v) for v in call.args["pad"]] + [0] * 4
    left, right, top, bottom = amounts[:4]
    if any(amounts[4:]) or min(left, right, top, bottom) < 0:
        raise call.fail(f"padding {list(call.args['pad'])}; the vocabulary pads H and W by non-negative amounts")
    return Mapped((x,), node=S.ZeroPad(padding=(top, bottom, left, right)))


def alias(call: Call) -> Mapped:
    """Ops that do not change the value (or only in training: the dropout variants
    other than plain dropout are dropped, as their training rule is not the spec's)."""
    first = next(iter(call.args.values()))
    return Mapped((first,), alias=True)


MAPPERS: Dict[str, Callable[[Call], Mapped]] = {
    "conv2d": conv2d, "convolution": convolution, "_convolution": convolution,
    "batch_norm": batch_norm, "_native_batch_norm_legit_no_training": batch_norm,
    "native_batch_norm": batch_norm, "_native_batch_norm_legit": batch_norm,
    "linear": linear, "addmm": addmm,
    "relu": activation("relu"), "relu_": activation("relu"), "sigmoid": activation("sigmoid"),
    "sigmoid_": activation("sigmoid"), "tanh": activation("tanh"), "tanh_": activation("tanh"),
    "softmax": softmax, "_softmax": softmax,
    "max_pool2d": max_pool2d, "max_pool2d_with_indices": max_pool2d, "avg_pool2d": avg_pool2d,
    "adaptive_avg_pool2d": adaptive_avg_pool2d, "_adaptive_avg_pool2d": adaptive_avg_pool2d, "mean": mean,
    "view": reshape, "reshape": reshape, "_unsafe_view": reshape, "flatten": reshape, "squeeze": reshape,
    "view_copy": reshape,
    "cat": cat, "add": add, "add_": add, "dropout": dropout, "constant_pad_nd": pad, "pad": pad,
    **{name: alias for name in ("clone", "contiguous", "detach", "alias", "lift_fresh_copy", "feature_dropout",
                                "alpha_dropout", "feature_alpha_dropout")},
}

# Ops that compute nothing (shape assertions the export inserts).
IGNORED = ("_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size", "sym_constrain_range")
