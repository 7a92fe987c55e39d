"""Keras 3 backend (TensorFlow): interprets a spec into a functional `keras.Model`.

The model runs channels-last (NHWC) inside, because TensorFlow's CPU convolutions
support no other layout; the contract stays channels-first. `forward` takes and
returns NCHW arrays, and weights use the canonical layouts: conv kernels OIHW
(Keras HWIO), dense (out, in) (Keras (in, out)). A Flatten first transposes its
feature map to channels-first, so its C, H, W order matches the other backends
and dense weights need no reordering.

BatchNorm is `SpecBatchNormalization`: Keras's own layer, whose training-mode
update of the moving variance uses the unbiased batch variance where the spec
says so (Keras's own rule is the biased one); momentum maps to Keras's
convention as 1 - spec momentum (`keras_momentum`).

Every layer that realises a spec node is named by the node's dotted path;
helper layers are named `<path>_pad` (explicit padding) and `<path>_chw` (the
transpose before a Flatten). A Sequential or Identity node has no layer of its
own: its output is the tensor of its last child or its input.
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

# Before the first `import keras`: Keras on TensorFlow, and TensorFlow's C++ INFO lines
# (CPU feature notices, XLA start-up) kept off stderr; both only where unset.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from .. import shapes  # noqa: E402
from .. import spec as S  # noqa: E402
from ..weights import Weights, check  # noqa: E402
from . import Gradients, heavy_ball_momentum  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(f"the keras backend runs on Keras's TensorFlow backend, but Keras was loaded with "
                      f"{keras.backend.backend()!r} (set KERAS_BACKEND=tensorflow)")

DTYPES = ("float32", "float64")
CHANNELS_LAST = "channels_last"
INPUT_NAME = "input"
ROOT_NAME = "root"  # the layer name of a root node that needs a layer (a leaf or a Parallel)


# ------------------------------------------------------------------ custom layers


def _serializable(cls):
    return keras.saving.register_keras_serializable(package="refnets")(cls)


def _pad_hw(x, padding: S.Pad4, value: float = 0.0):
    t, b, l, r = padding
    return ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=value)


@_serializable
class ConstantPadding2D(keras.layers.Layer):
    """Pads H and W of an NHWC tensor per side (top, bottom, left, right) with a
    constant. With -inf it is a max pool's own padding, which never wins the max;
    ZeroPadding2D cannot express that."""

    def __init__(self, padding, value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple(int(p) for p in padding)
        self.value = float(value)

    def call(self, inputs):
        return _pad_hw(inputs, self.padding, self.value)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        t, b, l, r = self.padding
        return (n, None if h is None else h + t + b, None if w is None else w + l + r, c)

    def get_config(self):
        return {**super().get_config(), "padding": list(self.padding), "value": self.value}


def _known_hw(layer: keras.layers.Layer, input_shape) -> Tuple[int, int]:
    h, w = input_shape[1:3]
    if h is None or w is None:
        raise ValueError(f"layer {layer.name!r} needs a known input height and width, got {tuple(input_shape)}")
    return int(h), int(w)


@_serializable
class DivisorAveragePooling2D(keras.layers.Layer):
    """An AvgPool that AveragePooling2D cannot express (own padding, ceil-mode
    overhang): a zero-padded sum pool divided by the spec's divisor map
    (`shapes.avgpool_divisors`), as the torch backend's DivisorAvgPool does."""

    def __init__(self, kernel, stride, padding, ceil_mode: bool, count_include_pad: bool, **kwargs):
        super().__init__(**kwargs)
        self.node = S.AvgPool(kernel=S.pair(tuple(kernel)), stride=S.pair(tuple(stride)),
                              padding=S.pad4(tuple(padding)), ceil_mode=bool(ceil_mode),
                              count_include_pad=bool(count_include_pad))

    def build(self, input_shape):
        hw = _known_hw(self, input_shape)
        self._window_padding = shapes.pool_window_padding(self.node, hw)
        self._divisor = shapes.avgpool_divisors(self.node, hw)[:, :, None]  # (oh, ow, 1), float64 numpy

    def call(self, inputs):
        kernel, stride = self.node.kernel, self.node.stride
        padded = _pad_hw(inputs, self._window_padding)
        mean = ops.average_pool(padded, kernel, stride, padding="valid", data_format=CHANNELS_LAST)
        return mean * (kernel[0] * kernel[1]) / ops.convert_to_tensor(self._divisor, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        oh, ow = shapes.pool_output_hw(self.node, _known_hw(self, input_shape))
        return (input_shape[0], oh, ow, input_shape[3])

    def get_config(self):
        node = self.node
        return {**super().get_config(), "kernel": list(node.kernel), "stride": list(node.stride),
                "padding": list(node.padding), "ceil_mode": node.ceil_mode,
                "count_include_pad": node.count_include_pad}


def _window_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) 0/1 matrix: row i marks the input range of adaptive window i."""
    matrix = np.zeros((out, size))
    for i, (start, end) in enumerate(shapes.adaptive_windows(size, out)):
        matrix[i, start:end] = 1.0
    return matrix


@_serializable
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """PyTorch's AdaptiveAvgPool2d for any input size, upsampling included: the
    window sums as one einsum with fixed 0/1 window matrices, divided by the
    window sizes (sum, then divide, as PyTorch does). Identity when the sizes
    are equal."""

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = S.pair(tuple(output_size))

    def build(self, input_shape):
        hw = _known_hw(self, input_shape)
        self._identity = hw == self.output_size
        self._rows = _window_matrix(hw[0], self.output_size[0])  # (oh, h)
        self._cols = _window_matrix(hw[1], self.output_size[1])  # (ow, w)
        self._divisor = np.outer(self._rows.sum(1), self._cols.sum(1))[:, :, None]  # (oh, ow, 1)

    def call(self, inputs):
        if self._identity:
            return inputs
        dtype = self.compute_dtype
        rows, cols = (ops.convert_to_tensor(m, dtype=dtype) for m in (self._rows, self._cols))
        summed = ops.einsum("ih,nhwc,jw->nijc", rows, inputs, cols)
        return summed / ops.convert_to_tensor(self._divisor, dtype=dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_size + (input_shape[3],)

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size)}


@_serializable
class StridedDilatedConv2D(keras.layers.Conv2D):
    """A dilated conv with a stride, which TensorFlow refuses: the stride-1
    dilated conv, sampled every `subsample` rows and columns (the same windows,
    at the cost of the full stride-1 conv)."""

    def __init__(self, *args, subsample=(1, 1), **kwargs):
        super().__init__(*args, **kwargs)
        self.subsample = S.pair(tuple(subsample))

    def convolution_op(self, inputs, kernel):
        sh, sw = self.subsample
        return super().convolution_op(inputs, kernel)[:, ::sh, ::sw, :]

    def compute_output_shape(self, input_shape):
        n, h, w, c = super().compute_output_shape(input_shape)
        sh, sw = self.subsample
        return (n, None if h is None else -(-h // sh), None if w is None else -(-w // sw), c)

    def get_config(self):
        return {**super().get_config(), "subsample": list(self.subsample)}


@_serializable
class SpecBatchNormalization(keras.layers.BatchNormalization):
    """Keras's BatchNormalization, except that with `unbiased_running_var` a
    training-mode call updates the moving variance with the unbiased batch
    variance, var * n / (n - 1) over the n values per channel (PyTorch's rule,
    the spec's default); normalisation still uses the biased one, as in every
    framework. Without it, this is Keras's own layer."""

    def __init__(self, *, unbiased_running_var: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.unbiased_running_var = bool(unbiased_running_var)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self.unbiased_running_var):
            return super().call(inputs, training=training, mask=mask)
        if mask is not None or self.renorm or self.synchronized:
            raise ValueError(f"{self.name}: the unbiased running variance is implemented without mask, "
                             f"renorm or synchronisation")
        axes = [a for a in range(len(inputs.shape)) if a != self.axis % len(inputs.shape)]
        mean, variance = ops.moments(inputs, axes=axes)
        shape = ops.shape(inputs)  # ints, or scalar tensors for dimensions unknown when tracing
        count = ops.cast(1.0, inputs.dtype)
        for axis in axes:
            count = count * ops.cast(shape[axis], inputs.dtype)
        unbiased = variance * (count / (count - 1.0))
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + unbiased * (1.0 - self.momentum))
        return ops.batch_normalization(inputs, mean, variance, axis=self.axis,
                                       offset=self.beta if self.center else None,
                                       scale=self.gamma if self.scale else None, epsilon=self.epsilon)

    def get_config(self):
        return {**super().get_config(), "unbiased_running_var": self.unbiased_running_var}


def keras_momentum(node: S.BatchNorm) -> float:
    """Keras's momentum (the weight of the *old* moving statistic) for the spec's
    (PyTorch's: the weight of the new batch statistic)."""
    return 1.0 - node.momentum


# ------------------------------------------------------------------------ building


def _conv(node: S.Conv2d, x, name: str, dtype: str):
    if any(node.padding):
        t, b, l, r = node.padding
        x = keras.layers.ZeroPadding2D(((t, b), (l, r)), data_format=CHANNELS_LAST, dtype=dtype,
                                       name=f"{name}_pad")(x)
    common = dict(filters=node.out_channels, kernel_size=node.kernel, padding="valid",
                  data_format=CHANNELS_LAST, dilation_rate=node.dilation, groups=node.groups,
                  use_bias=node.bias, dtype=dtype, name=name)
    if max(node.stride) > 1 and max(node.dilation) > 1:
        return StridedDilatedConv2D(strides=1, subsample=node.stride, **common)(x)
    return keras.layers.Conv2D(strides=node.stride, **common)(x)


def _maxpool(node: S.MaxPool, info: shapes.NodeInfo, x, name: str, dtype: str):
    padding = shapes.pool_window_padding(node, info.in_shape[1:])
    if any(padding):
        x = ConstantPadding2D(padding, float("-inf"), dtype=dtype, name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(node.kernel, node.stride, padding="valid", data_format=CHANNELS_LAST,
                                     dtype=dtype, name=name)(x)


def _avgpool(node: S.AvgPool, info: shapes.NodeInfo, x, name: str, dtype: str):
    if not any(shapes.pool_window_padding(node, info.in_shape[1:])):
        return keras.layers.AveragePooling2D(node.kernel, node.stride, padding="valid",
                                             data_format=CHANNELS_LAST, dtype=dtype, name=name)(x)
    return DivisorAveragePooling2D(node.kernel, node.stride, node.padding, node.ceil_mode,
                                   node.count_include_pad, dtype=dtype, name=name)(x)


def _flatten(info: shapes.NodeInfo, x, name: str, dtype: str):
    if len(info.in_shape) == 3:  # NHWC -> NCHW first: the canonical C, H, W order
        x = keras.layers.Permute((3, 1, 2), dtype=dtype, name=f"{name}_chw")(x)
    return keras.layers.Flatten(data_format=CHANNELS_LAST, dtype=dtype, name=name)(x)


def _leaf(node: S.Node, info: shapes.NodeInfo, x, name: str, dtype: str):
    """The output tensor of the layer(s) realising leaf `node` on input `x`."""
    if isinstance(node, S.Conv2d):
        return _conv(node, x, name, dtype)
    if isinstance(node, S.MaxPool):
        return _maxpool(node, info, x, name, dtype)
    if isinstance(node, S.AvgPool):
        return _avgpool(node, info, x, name, dtype)
    if isinstance(node, S.Flatten):
        return _flatten(info, x, name, dtype)
    if isinstance(node, S.Dense):
        layer = keras.layers.Dense(node.out_features, use_bias=node.bias, dtype=dtype, name=name)
    elif isinstance(node, S.BatchNorm):
        layer = SpecBatchNormalization(axis=-1, epsilon=node.eps, momentum=keras_momentum(node), scale=node.affine,
                                       center=node.affine, unbiased_running_var=node.unbiased_running_var,
                                       dtype=dtype, name=name)
    elif isinstance(node, S.Activation):
        layer = keras.layers.Activation(node.kind, dtype=dtype, name=name)
    elif isinstance(node, S.GlobalAvgPool):
        layer = keras.layers.GlobalAveragePooling2D(data_format=CHANNELS_LAST, dtype=dtype, name=name)
    elif isinstance(node, S.AdaptiveAvgPool):
        layer = AdaptiveAveragePooling2D(node.output_size, dtype=dtype, name=name)
    elif isinstance(node, S.ZeroPad):
        t, b, l, r = node.padding
        layer = keras.layers.ZeroPadding2D(((t, b), (l, r)), data_format=CHANNELS_LAST, dtype=dtype, name=name)
    elif isinstance(node, S.Dropout):
        layer = keras.layers.Dropout(node.rate, dtype=dtype, name=name)
    else:
        raise TypeError(f"keras backend: unsupported node type {type(node).__name__}")
    return layer(x)


def _merge(node: S.Parallel, outs: List, name: str, dtype: str):
    if len(outs) == 1:
        layer = keras.layers.Identity(dtype=dtype, name=name)
        return layer(outs[0])
    if node.merge == "add":
        return keras.layers.Add(dtype=dtype, name=name)(outs)
    return keras.layers.Concatenate(axis=-1, dtype=dtype, name=name)(outs)  # channels, maps or vectors


def _emit(node: S.Node, path: str, x, infos: Dict[str, shapes.NodeInfo], dtype: str, tensors: Dict):
    """Add the layers of `node` (at `path`) on input `x`; record every node's
    output tensor in `tensors` by path; return the node's output."""
    name = path or ROOT_NAME
    if isinstance(node, S.Sequential):
        for index, child in enumerate(node.children):
            x = _emit(child, S.join(path, S.child_segment(child, index)), x, infos, dtype, tensors)
    elif isinstance(node, S.Parallel):
        outs = [_emit(b, S.join(path, S.child_segment(b, i)), x, infos, dtype, tensors)
                for i, b in enumerate(node.branches)]
        x = _merge(node, outs, name, dtype)
    elif not isinstance(node, S.Identity):
        x = _leaf(node, infos[path], x, name, dtype)
    tensors[path] = x
    return x


def _nhwc(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    return tuple(shape[1:]) + (shape[0],) if len(shape) == 3 else tuple(shape)


def _check_shapes(model: S.ModelSpec, infos: Dict[str, shapes.NodeInfo], tensors: Dict) -> None:
    """Fail loudly if any node's Keras output shape differs from the spec's."""
    wrong = [f"{path or '<root>'}: keras {tuple(t.shape[1:])}, spec {_nhwc(infos[path].out_shape)} (NHWC)"
             for path, t in tensors.items() if tuple(t.shape[1:]) != _nhwc(infos[path].out_shape)]
    if wrong:
        raise RuntimeError(f"keras backend: {model.name} was built with wrong shapes: " + "; ".join(wrong))


class _Bindings:
    """What the backend keeps on a built model (a plain object, so Keras does
    not track it): the spec, each node's output tensor, the compiled runners."""

    def __init__(self, spec: S.ModelSpec, dtype: str, tensors: Dict):
        self.spec, self.dtype, self.tensors = spec, dtype, tensors
        self.runners: Dict[Tuple[str, ...], tuple] = {}


def build(model: S.ModelSpec, dtype: str = "float32") -> keras.Model:
    """A functional `keras.Model` taking NHWC input of shape (H, W, C), with
    Keras's own initialisers; every layer computes in `dtype`."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    infos = shapes.infer(model)
    c, h, w = model.input_shape
    inputs = keras.Input((h, w, c), dtype=dtype, name=INPUT_NAME)
    tensors: Dict[str, object] = {}
    outputs = _emit(model.root, "", inputs, infos, dtype, tensors)
    _check_shapes(model, infos, tensors)
    net = keras.Model(inputs, outputs, name=model.name)
    net.refnets_spec = model
    net._refnets = _Bindings(model, dtype, tensors)
    return net


def _bindings(model: keras.Model) -> _Bindings:
    bindings = getattr(model, "_refnets", None)
    if not isinstance(bindings, _Bindings):
        raise TypeError("not a model built by refnets' keras backend")
    return bindings


# ------------------------------------------------------------------------- weights

# Keras layout -> canonical layout, as an axis permutation (None: same layout).
_TO_CANONICAL = {"conv": (3, 2, 0, 1), "dense": (1, 0), "vector": None}  # HWIO -> OIHW, (in, out) -> (out, in)
_LAYER_PARAMS = {
    S.Conv2d: (("weight", "kernel", "conv"), ("bias", "bias", "vector")),
    S.Dense: (("weight", "kernel", "dense"), ("bias", "bias", "vector")),
    S.BatchNorm: (("weight", "gamma", "vector"), ("bias", "beta", "vector"),
                  ("running_mean", "moving_mean", "vector"), ("running_var", "moving_variance", "vector")),
}


def _slots(model: keras.Model) -> Dict[str, Tuple[keras.Variable, str]]:
    """Canonical name -> (Keras variable, layout) for every parameter."""
    slots = {}
    for path, node in _bindings(model).spec.walk():
        params = _LAYER_PARAMS.get(type(node), ())
        layer = model.get_layer(path or ROOT_NAME) if params else None
        for canonical, attribute, layout in params:
            variable = getattr(layer, attribute)
            if variable is not None:  # a conv or dense without bias
                slots[S.join(path, canonical)] = (variable, layout)
    return slots


def _permute(array: np.ndarray, order) -> np.ndarray:
    return np.array(array if order is None else np.transpose(array, order), order="C", copy=True)


def _inverse(order):
    return None if order is None else tuple(int(i) for i in np.argsort(order))


# A Keras Dense fed by a channels-last Flatten of an (H, W, C) map (keras.applications'
# VGG): its kernel rows are in H, W, C order, the canonical dense columns in C, H, W.
NHWC_DENSE = "dense_nhwc"


def to_canonical(array: np.ndarray, layout: str, hwc=None) -> np.ndarray:
    """A Keras variable in the canonical layout: "conv" HWIO -> OIHW, "dense"
    (in, out) -> (out, in), "vector" unchanged, NHWC_DENSE (H*W*C, out) ->
    (out, C*H*W) given the flattened map's (H, W, C)."""
    if layout == NHWC_DENSE:
        h, w, c = hwc
        out = np.asarray(array).T.reshape(-1, h, w, c)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2).reshape(out.shape[0], c * h * w))
    return _permute(np.asarray(array), _TO_CANONICAL[layout])


def from_canonical(array: np.ndarray, layout: str, hwc=None) -> np.ndarray:
    """The inverse of `to_canonical`: a canonical array in Keras's layout."""
    if layout == NHWC_DENSE:
        h, w, c = hwc
        out = np.asarray(array).reshape(-1, c, h, w).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(out.reshape(out.shape[0], h * w * c).T)
    return _permute(np.asarray(array), _inverse(_TO_CANONICAL[layout]))


def canonical_shape(shape, layout: str, hwc=None) -> Tuple[int, ...]:
    """The canonical shape of a Keras variable of `shape` in `layout`."""
    if layout == NHWC_DENSE:
        return (int(shape[1]), int(shape[0]))
    order = _TO_CANONICAL[layout]
    return tuple(int(v) for v in shape) if order is None else tuple(int(shape[i]) for i in order)


def get_weights(model: keras.Model) -> Weights:
    return {name: to_canonical(ops.convert_to_numpy(var), layout) for name, (var, layout) in _slots(model).items()}


def set_weights(model: keras.Model, weights: Weights) -> None:
    slots = _slots(model)
    check({name: canonical_shape(var.shape, layout) for name, (var, layout) in slots.items()}, weights)
    for name, (var, layout) in slots.items():
        var.assign(from_canonical(np.asarray(weights[name], dtype=var.dtype), layout))


# ------------------------------------------------------------------------- running


def _runner(model: keras.Model, capture: Tuple[str, ...], train: bool = False):
    """(compiled function NHWC -> tuple of tensors, index of each requested path
    in that tuple); the model output is path "". Cached per capture set and
    mode. Paths sharing a tensor (a Sequential and its last child) share an output."""
    bindings = _bindings(model)
    key = ("",) + capture
    if (train, key) not in bindings.runners:
        tensors, index = [], {}
        for path in key:
            tensor = bindings.tensors[path]
            position = next((i for i, t in enumerate(tensors) if t is tensor), None)
            if position is None:
                position = len(tensors)
                tensors.append(tensor)
            index[path] = position
        net = keras.Model(model.inputs, tensors, name=f"{model.name}_capture") if len(key) > 1 else model
        signature = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), bindings.dtype)

        @tf.function(input_signature=[signature])
        def run(x):
            outs = net(x, training=train)
            return tuple(outs) if isinstance(outs, (list, tuple)) else (outs,)

        bindings.runners[(train, key)] = (run, index)
    return bindings.runners[(train, key)]


def _channels_first(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(array, (0, 3, 1, 2))) if array.ndim == 4 else array


def _nhwc_batch(bindings: _Bindings, x: np.ndarray) -> tf.Tensor:
    """A channels-first batch as the model's NHWC input; ValueError if its shape
    is not the one the model was built for."""
    x = np.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(bindings.spec.input_shape):
        c, h, w = bindings.spec.input_shape
        raise ValueError(f"{bindings.spec.name} was built for batches of shape (N, {c}, {h}, {w}), got {x.shape}")
    return tf.constant(np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=bindings.dtype))


def _moving_statistics(model: keras.Model) -> List[keras.Variable]:
    return [var for name, (var, _) in _slots(model).items() if name.rsplit(".", 1)[-1] in shapes.BN_STATISTICS]


def forward(model: keras.Model, x: np.ndarray, capture: Sequence[str] = (),
            train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Forward of a channels-first batch, in inference mode or (`train`) in
    training mode (BatchNorm on batch statistics; the moving statistics are
    restored afterwards, so the model is unchanged); optionally the outputs of
    the spec nodes named in `capture` (channels-first). Runs a compiled function
    cached per capture set and mode: the first call of each traces it."""
    bindings = _bindings(model)
    capture = tuple(dict.fromkeys(capture))
    unknown = [p for p in capture if p not in bindings.tensors]
    if unknown:
        raise KeyError(f"no node(s) {unknown} in the model")
    batch = _nhwc_batch(bindings, x)
    run, index = _runner(model, capture, train)
    statistics = _moving_statistics(model) if train else []
    saved = [ops.convert_to_numpy(var) for var in statistics]
    try:
        outs = run(batch)
    finally:
        for var, value in zip(statistics, saved):
            var.assign(value)
    arrays = [_channels_first(out.numpy()) for out in outs]
    return arrays[index[""]], {path: arrays[index[path]].copy() for path in capture}


def _trainable_slots(model: keras.Model) -> Dict[str, Tuple[keras.Variable, str]]:
    return {name: slot for name, slot in _slots(model).items()
            if name.rsplit(".", 1)[-1] not in shapes.BN_STATISTICS}


def _loss(model: keras.Model, batch: tf.Tensor, labels: np.ndarray, train: bool):
    """(loss, logits): Keras's sparse categorical cross-entropy from logits, mean over the batch."""
    logits = model(batch, training=train)
    per_sample = keras.losses.sparse_categorical_crossentropy(
        tf.constant(np.asarray(labels, dtype=np.int64)), logits, from_logits=True)
    return ops.mean(per_sample), logits


def gradients(model: keras.Model, x: np.ndarray, labels: np.ndarray, train: bool = False) -> Gradients:
    """Loss, logits and the gradients of the mean cross-entropy with respect to
    the input (returned channels-first) and every parameter (in the canonical
    layout, converted as the weights are). `train`: training mode, which
    updates the moving statistics as a training step does."""
    bindings = _bindings(model)
    batch = _nhwc_batch(bindings, x)
    slots = _trainable_slots(model)
    with tf.GradientTape() as tape:
        tape.watch(batch)
        loss, logits = _loss(model, batch, labels, train)
    grads = tape.gradient(loss, [batch] + [var for var, _ in slots.values()])
    params = {name: to_canonical(np.zeros(var.shape, bindings.dtype) if grad is None else grad.numpy(), layout)
              for (name, (var, layout)), grad in zip(slots.items(), grads[1:])}
    return Gradients(float(loss), ops.convert_to_numpy(logits), _channels_first(grads[0].numpy()), params)


class Trainer:
    """Training steps with keras.optimizers.SGD ("sgd", or "momentum": heavy
    ball; no Nesterov, no weight decay) on the mean cross-entropy, the model in
    training mode.

    Keras would round both hyperparameters to float32 for a float64 model: it
    holds the learning rate in a float32 variable, and its update casts a Python
    float momentum through a float32 tensor. So the learning rate is a callable
    returning a float64 tensor and the momentum a float64 tensor; `update_step`
    casts both to each variable's dtype (float32 models round them as before)."""

    def __init__(self, model: keras.Model, optimizer: str, lr: float, momentum: float = 0.0):
        self.model = model
        rate = tf.constant(float(lr), tf.float64)
        coefficient = heavy_ball_momentum(optimizer, momentum)
        self.optimizer = keras.optimizers.SGD(learning_rate=lambda: rate, momentum=coefficient)
        if coefficient:
            self.optimizer.momentum = tf.constant(coefficient, tf.float64)

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        """One optimiser step on the batch; the loss before the step."""
        batch = _nhwc_batch(_bindings(self.model), x)
        variables = [var for var, _ in _trainable_slots(self.model).values()]
        with tf.GradientTape() as tape:
            loss, _ = _loss(self.model, batch, labels, train=True)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return float(loss)


def count_params(model: keras.Model) -> Tuple[int, int]:
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    return trainable, int(model.count_params())


def versions() -> Dict[str, str]:
    return {"keras": keras.__version__, "tensorflow": tf.__version__}
