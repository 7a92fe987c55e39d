"""Keras layers for what keras.layers cannot express: per-side constant (-inf)
padding, PyTorch-rule average pools over explicit padding, PyTorch's adaptive
average pool, a strided dilated conv, and BatchNormalization with the unbiased
running-variance update. Registered as serializable under package "refnets"."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ... import shapes
from ... import spec as S
from .framework import CHANNELS_LAST, keras, ops


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
