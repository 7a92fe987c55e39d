"""MXNet Gluon backend: interprets a spec into a tree of `HybridBlock`s whose
children are registered under the spec's segment names, so the dotted paths of
`_collect_params_with_prefix()` are the canonical names (BatchNorm's `gamma` and
`beta` read as `weight` and `bias`).

Where Gluon's own layers do not compute exactly what the spec says, the layer is
realised explicitly: asymmetric conv padding as a zero pad before a valid conv,
asymmetric or ceil-mode max pooling over an explicit -inf pad (MXNet's 'full'
pooling convention does not follow PyTorch's ceil-mode rule), and such average
pools as a zero-padded sum pool over the spec's divisor map.

BatchNorm's running statistics: Gluon's operator updates them in its *backward*
pass (a training-mode forward alone changes nothing), with the biased batch
variance and its momentum held as a C float (float32, even for a float64
model). Neither can be configured, so the backend's training step
(`gradients(train=True)`, `Trainer.step`) reads the batch statistics from the
operator and applies the spec's update itself (`_SpecRunningStatistics`), with
Gluon's momentum convention (`gluon_momentum`: 1 - spec momentum) in float64.
A hand-written Gluon training loop gets Gluon's own update."""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from .. import shapes
from .. import spec as S
from ..weights import Weights, check
from . import Gradients, heavy_ball_momentum

DTYPES = ("float32", "float64")
CONTEXT = mx.cpu()

# Gluon's BatchNorm parameter names -> the canonical ones.
CANONICAL_PARAM = {"gamma": "weight", "beta": "bias"}


def _symmetric(pad: S.Pad4):
    t, b, l, r = pad
    return (t, l) if (t == b and l == r) else None


def _native_pool_padding(node):
    """(ph, pw) when Gluon's own pooling computes exactly what the spec says:
    symmetric padding of at most half the window (so no window is all padding)
    and floor mode; else None."""
    symmetric = _symmetric(node.padding)
    if node.ceil_mode or symmetric is None:
        return None
    if any(p > k // 2 for p, k in zip(symmetric, node.kernel)):
        return None
    return symmetric


def _pad_width(pad: S.Pad4) -> Tuple[int, ...]:
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
        self._pad = _pad_width(side_padding)

    def hybrid_forward(self, F, x, weight, bias=None):
        padded = F.pad(x, mode="constant", pad_width=self._pad, constant_value=0)
        return super().hybrid_forward(F, padded, weight, bias)


class PaddedMaxPool(nn.HybridBlock):
    """Max pool over an explicit -inf pad (the node's padding plus the ceil-mode
    overhang), then a 'valid' (floor) pool."""

    def __init__(self, node: S.MaxPool, window_padding: S.Pad4):
        super().__init__()
        self._pad = _pad_width(window_padding)
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
        self._pad = _pad_width(window_padding)
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
        self._pad = _pad_width(padding)

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
    """Mean over H and W: (N, C, H, W) -> (N, C)."""

    def hybrid_forward(self, F, x):
        return F.mean(x, axis=(2, 3))


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


# --------------------------------------------------------------------------- builders


def _conv(node: S.Conv2d, info: shapes.NodeInfo) -> nn.HybridBlock:
    common = dict(channels=node.out_channels, kernel_size=tuple(node.kernel), strides=tuple(node.stride),
                  dilation=tuple(node.dilation), groups=node.groups, use_bias=node.bias,
                  in_channels=info.in_shape[0], layout="NCHW")
    symmetric = _symmetric(node.padding)
    if symmetric is not None:
        return nn.Conv2D(padding=symmetric, **common)
    return PaddedConv2D(side_padding=node.padding, **common)


def _maxpool(node: S.MaxPool, info: shapes.NodeInfo) -> nn.HybridBlock:
    native = _native_pool_padding(node)
    if native is not None:
        return nn.MaxPool2D(pool_size=tuple(node.kernel), strides=tuple(node.stride), padding=native)
    return PaddedMaxPool(node, shapes.pool_window_padding(node, info.in_shape[1:]))


def _avgpool(node: S.AvgPool, info: shapes.NodeInfo) -> nn.HybridBlock:
    native = _native_pool_padding(node)
    if native is not None:
        return nn.AvgPool2D(pool_size=tuple(node.kernel), strides=tuple(node.stride), padding=native,
                            count_include_pad=node.count_include_pad)
    in_hw = info.in_shape[1:]
    return DivisorAvgPool(node, shapes.pool_window_padding(node, in_hw), in_hw)


def gluon_momentum(node: S.BatchNorm) -> float:
    """Gluon's momentum (the weight of the *old* running statistic) for the spec's
    (PyTorch's: the weight of the new batch statistic)."""
    return 1.0 - node.momentum


def _leaf(node: S.Node, info: shapes.NodeInfo) -> nn.HybridBlock:
    if isinstance(node, S.Conv2d):
        return _conv(node, info)
    if isinstance(node, S.Dense):
        return nn.Dense(node.out_features, use_bias=node.bias, flatten=False, in_units=info.in_shape[0])
    if isinstance(node, S.BatchNorm):
        # scale=False, center=False: Gluon still holds gamma (ignored: fix_gamma) and beta
        # (kept at its zero initialisation); neither is a canonical weight (see `_params`).
        return nn.BatchNorm(axis=1, momentum=gluon_momentum(node), epsilon=node.eps, in_channels=info.in_shape[0],
                            scale=node.affine, center=node.affine)
    if isinstance(node, S.Activation):
        return nn.Activation(node.kind)
    if isinstance(node, S.MaxPool):
        return _maxpool(node, info)
    if isinstance(node, S.AvgPool):
        return _avgpool(node, info)
    if isinstance(node, S.GlobalAvgPool):
        return GlobalAvgPool()
    if isinstance(node, S.AdaptiveAvgPool):
        return AdaptiveAvgPool(node.output_size)
    if isinstance(node, S.ZeroPad):
        return ZeroPad(node.padding)
    if isinstance(node, S.Flatten):
        return nn.Flatten()
    if isinstance(node, S.Dropout):
        return nn.Dropout(node.rate)
    if isinstance(node, S.Identity):
        return Identity()
    raise TypeError(f"mxnet backend: unsupported node type {type(node).__name__}")


def _block(node: S.Node, path: str, infos) -> nn.HybridBlock:
    if isinstance(node, (S.Sequential, S.Parallel)):
        kids = {}
        for index, child in enumerate(S.children_of(node)):
            segment = S.child_segment(child, index)
            kids[segment] = _block(child, S.join(path, segment), infos)
        if isinstance(node, S.Sequential):
            return SpecSequential(kids)
        return SpecParallel(kids, node.merge)
    return _leaf(node, infos[path])


def _check_output_shape(net: nn.HybridBlock, model: S.ModelSpec) -> None:
    """Fail loudly if Gluon's shape for the spec's input differs from the spec's
    (symbolic shape inference: nothing is computed)."""
    symbol = net(mx.sym.var("data"))
    _, out_shapes, _ = symbol.infer_shape(data=(1,) + tuple(model.input_shape))
    got = tuple(out_shapes[0][1:])
    expected = tuple(shapes.output_shape(model))
    if got != expected:
        raise RuntimeError(f"mxnet backend: model {model.name!r} gives output shape {got} for input "
                           f"{tuple(model.input_shape)}, but the spec says {expected}")


def build(model: S.ModelSpec, dtype: str = "float32") -> nn.HybridBlock:
    """A hybridized `HybridBlock`, initialised by Gluon's own initialisers
    (He-normal kernels via `Xavier`, the layers' default zero biases and unit
    BatchNorm statistics)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    infos = shapes.infer(model)
    net = _block(model.root, "", infos)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=CONTEXT)
    net.cast(dtype)
    net.hybridize()
    _check_output_shape(net, model)
    net.refnets_spec = model
    net.refnets_dtype = dtype
    mx.nd.waitall()  # initialisation runs asynchronously: finish it inside build, not in whatever comes next
    return net


# --------------------------------------------------------------------------- weights


def _canonical(name: str) -> str:
    prefix, _, param = name.rpartition(".")
    return S.join(prefix, CANONICAL_PARAM.get(param, param))


def _fixed_params(model_spec: S.ModelSpec) -> set:
    """Gluon parameter names that are no canonical weights: the gamma and beta an
    affine-free BatchNorm still holds (constant 1 and 0, never trained)."""
    return {S.join(path, p) for path, node in model_spec.walk()
            if isinstance(node, S.BatchNorm) and not node.affine for p in ("gamma", "beta")}


def _params(model: nn.HybridBlock) -> Dict[str, gluon.Parameter]:
    """Canonical name -> Gluon parameter, BatchNorm statistics included; constants
    (an average pool's divisor map) and an affine-free BatchNorm's fixed gamma and
    beta are not weights."""
    fixed = _fixed_params(model.refnets_spec)
    return {_canonical(k): p for k, p in model._collect_params_with_prefix().items()
            if not isinstance(p, gluon.Constant) and k not in fixed}


def get_weights(model: nn.HybridBlock) -> Weights:
    return {k: p.data().asnumpy() for k, p in _params(model).items()}


def set_weights(model: nn.HybridBlock, weights: Weights) -> None:
    params = _params(model)
    check({k: tuple(p.shape) for k, p in params.items()}, weights)
    for name, param in params.items():
        param.set_data(mx.nd.array(np.asarray(weights[name], dtype=param.dtype), ctx=CONTEXT, dtype=param.dtype))


def count_params(model: nn.HybridBlock) -> Tuple[int, int]:
    sizes = [(int(np.prod(p.shape)), p.grad_req != "null") for p in _params(model).values()]
    return sum(n for n, trainable in sizes if trainable), sum(n for n, _ in sizes)


# --------------------------------------------------------------------------- forward


def _dtype(model: nn.HybridBlock):
    params = _params(model)
    if params:
        return next(iter(params.values())).dtype
    return getattr(model, "refnets_dtype", "float32")


def _blocks_at(model: nn.HybridBlock, paths: Sequence[str]) -> Dict[str, nn.HybridBlock]:
    """The block of every spec path; KeyError naming the paths the spec lacks."""
    known = {path for path, _ in model.refnets_spec.walk()}
    unknown = [p for p in paths if p not in known]
    if unknown:
        raise KeyError(f"no node(s) {unknown} in the model")
    blocks = {}
    for path in paths:
        block = model
        for segment in path.split(".") if path else ():
            block = block._children[segment]
        blocks[path] = block
    return blocks


def _forward_capturing(model: nn.HybridBlock, x: mx.nd.NDArray, capture: Sequence[str]):
    """A hybridized block runs one cached graph and fires no child hooks, so the
    model runs imperatively (the same operators) with forward hooks, and is
    hybridized again afterwards."""
    blocks = _blocks_at(model, capture)
    store: Dict[str, np.ndarray] = {}

    def hook_for(path):
        def hook(_block, _inputs, output):
            store[path] = output.asnumpy()
        return hook

    handles = [blocks[p].register_forward_hook(hook_for(p)) for p in capture]
    model.hybridize(False)
    try:
        out = model(x)
    finally:
        for handle in handles:
            handle.detach()
        model.hybridize()
    return out, store


def _array(model: nn.HybridBlock, x: np.ndarray) -> mx.nd.NDArray:
    return mx.nd.array(np.ascontiguousarray(x), ctx=CONTEXT, dtype=_dtype(model))


def forward(model: nn.HybridBlock, x: np.ndarray, capture: Sequence[str] = (),
            train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Forward of a channels-first batch without autograd recording, in
    inference mode (BatchNorm on running statistics, dropout off) or (`train`)
    training mode (BatchNorm on batch statistics; without a backward pass Gluon
    leaves the running statistics as they were); optionally the outputs of the
    spec nodes named in `capture`."""
    data = _array(model, x)
    capture = list(capture)
    with autograd.pause(train_mode=train):
        if capture:
            out, store = _forward_capturing(model, data, capture)
        else:
            out, store = model(data), {}
    return out.asnumpy(), store


# -------------------------------------------------------------------------- training


class _SpecRunningStatistics:
    """Around one training step (forward and backward) of `model` on a batch of
    `batch` samples: the spec's update of every BatchNorm's running statistics
    in place of Gluon's.

    Before the step the running statistics are saved and zeroed; the operator's
    backward then leaves g * 0 + (1 - g) * s = (1 - g) * s in them, where s is
    the batch mean or biased variance and g its momentum as a float32 (both
    computed in float32, as the operator does), so s is read back to within half
    an ulp of the model's dtype. Then, in float64, with g the block's momentum
    (Gluon's convention, `gluon_momentum`):
        running = g * old + (1 - g) * s,  s of the variance * n / (n - 1) if unbiased,
    n = batch * H * W values per channel. If the step fails, the old statistics are restored."""

    def __init__(self, model: nn.HybridBlock, batch: int):
        infos = shapes.infer(model.refnets_spec)
        paths = [p for p, node in model.refnets_spec.walk() if isinstance(node, S.BatchNorm)]
        self._layers = []
        for path, block in _blocks_at(model, paths).items():
            info = infos[path]
            count = batch * int(np.prod(info.in_shape[1:]))
            correction = count / (count - 1.0) if info.node.unbiased_running_var else 1.0
            self._layers.append((block, float(block._kwargs["momentum"]), correction))

    def __enter__(self):
        self._saved = []
        for block, _, _ in self._layers:
            old = (block.running_mean.data().asnumpy(), block.running_var.data().asnumpy())
            self._saved.append(old)
            for param in (block.running_mean, block.running_var):
                param.data()[:] = 0
        return self

    def __exit__(self, error_type, _error, _traceback):
        for (block, momentum, correction), old in zip(self._layers, self._saved):
            new = old if error_type is not None else self._spec_update(block, momentum, correction, old)
            for param, value in zip((block.running_mean, block.running_var), new):
                param.set_data(mx.nd.array(value, ctx=CONTEXT, dtype=param.dtype))
        return False

    @staticmethod
    def _spec_update(block, momentum: float, correction: float, old):
        """(running_mean, running_var) by the spec's rule from the batch statistics
        the operator left in the zeroed statistics."""
        weight = np.float32(1.0) - np.float32(momentum)  # what the operator multiplied the batch statistic by
        if not weight:  # momentum 1 (spec momentum 0): the statistics never move
            return old
        mean, var = (p.data().asnumpy().astype(np.float64) / np.float64(weight)
                     for p in (block.running_mean, block.running_var))
        return (momentum * old[0] + (1.0 - momentum) * mean,
                momentum * old[1] + (1.0 - momentum) * var * correction)


class _UnchangedRunningStatistics:
    """Around an inference-mode backward: restores the running statistics after
    it. MXNet's BatchNorm backward rewrites them even outside training mode (a
    measured change of one ulp in a float64 BatchNorm over (N, C) inputs)."""

    def __init__(self, model: nn.HybridBlock):
        self._params = [p for name, p in _params(model).items() if name.rsplit(".", 1)[-1] in shapes.BN_STATISTICS]

    def __enter__(self):
        self._saved = [p.data().copy() for p in self._params]
        return self

    def __exit__(self, *_error):
        for param, value in zip(self._params, self._saved):
            param.set_data(value)
        return False


_LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def _backward(model: nn.HybridBlock, x: np.ndarray, labels: np.ndarray, train: bool, data=None):
    """Forward and backward of the mean cross-entropy (Gluon's softmax
    cross-entropy, averaged over the batch); in training mode the running
    statistics get the spec's update. (loss, logits) as NDArrays."""
    data = _array(model, x) if data is None else data
    label = mx.nd.array(np.asarray(labels), ctx=CONTEXT, dtype=data.dtype)
    with _SpecRunningStatistics(model, len(x)) if train else _UnchangedRunningStatistics(model):
        with autograd.record(train_mode=train):
            logits = model(data)
            loss = _LOSS(logits, label).mean()
        loss.backward()
        mx.nd.waitall()  # the operator writes the statistics asynchronously
    return loss, logits


def _trainable(model: nn.HybridBlock) -> Dict[str, gluon.Parameter]:
    return {name: p for name, p in _params(model).items() if p.grad_req != "null"}


def gradients(model: nn.HybridBlock, x: np.ndarray, labels: np.ndarray, train: bool = False) -> Gradients:
    """Loss, logits and the gradients of the mean cross-entropy with respect to
    the input and every parameter. `train`: training mode, which updates the
    BatchNorm running statistics by the spec's rule, as a training step does."""
    data = _array(model, x)
    data.attach_grad()
    loss, logits = _backward(model, x, labels, train, data)
    params = {name: p.grad().asnumpy() for name, p in _trainable(model).items()}
    return Gradients(float(loss.asscalar()), logits.asnumpy(), data.grad.asnumpy(), params)


class Trainer:
    """Training steps with Gluon's Trainer and its "sgd" optimiser (plain, or
    "momentum": heavy ball; no weight decay) on the mean cross-entropy, the
    model in training mode. The loss is already a mean, so the step's batch
    size is 1 (Gluon would divide the gradients by it). MXNet's optimiser
    operators hold the learning rate and momentum as float32, also for a float64
    model."""

    def __init__(self, model: nn.HybridBlock, optimizer: str, lr: float, momentum: float = 0.0):
        self.model = model
        settings = {"learning_rate": float(lr), "momentum": heavy_ball_momentum(optimizer, momentum), "wd": 0.0}
        self.trainer = gluon.Trainer(list(_trainable(model).values()), "sgd", settings, kvstore=None)

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        """One optimiser step on the batch; the loss before the step."""
        loss, _ = _backward(self.model, x, labels, train=True)
        self.trainer.step(1)
        mx.nd.waitall()
        return float(loss.asscalar())


def versions() -> Dict[str, str]:
    return {"mxnet": mx.__version__}
