"""Keras layers and keras.ops operations -> spec leaves with canonical weights: the
per-layer half of the Keras tracer (`trace` walks the graph).

A converter gets the layer, the values it reads (their channels-last shapes without
the batch axis and, for a vector made by flattening a channels-last map, the
permutation from canonical C, H, W positions to native H, W, C positions) and the
op's name, and returns a `Step`: the spec pieces in order (a layer with a fused
activation gives two) and the permutation of its output when it is a vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ... import spec as S
from ...trace.graph import untraceable
from .framework import CHANNELS_LAST, keras, ops
from .weights import to_canonical

KEEP = "keep"  # a step whose output vector keeps its input's feature order


@dataclass
class Value:
    """A value of the native graph: the id of the op computing it, its symbolic
    tensor (channels-last, batch first) and, for a vector flattened from a
    channels-last map, `perm[i]`: the native feature at canonical position i."""

    ref: str
    spec: object
    perm: Optional[np.ndarray] = None

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(int(v) for v in self.spec.shape[1:])


@dataclass
class Piece:
    """One traced op: a spec leaf (with weights) or a merge; `suffix` is appended to the op id."""

    node: Optional[S.Node] = None
    merge: Optional[str] = None
    weights: Dict[str, np.ndarray] = field(default_factory=dict)
    suffix: str = ""


@dataclass
class Step:
    pieces: List[Piece]
    perm: object = KEEP  # KEEP, None (canonical order) or a permutation


ACTIVATIONS = {keras.activations.linear: None, keras.activations.relu: "relu", keras.activations.sigmoid: "sigmoid",
               keras.activations.tanh: "tanh", keras.activations.softmax: "softmax"}


def activation_kind(fn, name: str) -> Optional[str]:
    """The spec kind of a Keras activation function (None: linear)."""
    if fn is None:
        return None
    if fn in ACTIVATIONS:
        return ACTIVATIONS[fn]
    raise untraceable(f"activation {getattr(fn, '__name__', fn)!r}", name,
                      "Keras activations traced: linear, relu, sigmoid, tanh, softmax")


def _fused(layer, name: str) -> List[Piece]:
    kind = activation_kind(getattr(layer, "activation", None), name)
    return [] if kind is None else [Piece(S.Activation(kind=kind), suffix=".activation")]


def _array(variable, dtype: str, layout: str = "vector") -> np.ndarray:
    return to_canonical(ops.convert_to_numpy(variable), layout).astype(dtype)


def _map_input(layer, values: Sequence[Value], name: str) -> None:
    if getattr(layer, "data_format", CHANNELS_LAST) != CHANNELS_LAST:
        raise untraceable(type(layer).__name__, name, f"data_format {layer.data_format!r}; traced models are "
                                                      f"channels-last")
    if len(values[0].shape) != 3:
        raise untraceable(type(layer).__name__, name, f"applied to an input of shape {values[0].shape}, not an "
                                                      f"(H, W, C) map")


def _padding(padding: str):
    return S.SAME if padding == "same" else (0, 0, 0, 0)


def _conv(layer, values, name, dtype) -> Step:
    _map_input(layer, values, name)
    node = S.Conv2d(out_channels=int(layer.filters), kernel=S.pair(tuple(layer.kernel_size)),
                    stride=S.pair(tuple(layer.strides)), padding=_padding(layer.padding),
                    dilation=S.pair(tuple(layer.dilation_rate)), groups=int(layer.groups), bias=bool(layer.use_bias))
    weights = {"weight": _array(layer.kernel, dtype, "conv")}
    if layer.use_bias:
        weights["bias"] = _array(layer.bias, dtype)
    return Step([Piece(node, weights=weights)] + _fused(layer, name))


def _depthwise(layer, values, name, dtype) -> Step:
    """A depthwise conv is a grouped conv with one group per input channel; Keras's
    kernel (kh, kw, C, multiplier) gives output channel c * multiplier + m."""
    _map_input(layer, values, name)
    kernel = ops.convert_to_numpy(layer.kernel)
    kh, kw, channels, multiplier = kernel.shape
    node = S.Conv2d(out_channels=channels * multiplier, kernel=(kh, kw), stride=S.pair(tuple(layer.strides)),
                    padding=_padding(layer.padding), dilation=S.pair(tuple(layer.dilation_rate)), groups=channels,
                    bias=bool(layer.use_bias))
    weight = kernel.reshape(kh, kw, channels * multiplier).transpose(2, 0, 1)[:, None]
    weights = {"weight": np.ascontiguousarray(weight).astype(dtype)}
    if layer.use_bias:
        weights["bias"] = _array(layer.bias, dtype)
    return Step([Piece(node, weights=weights)] + _fused(layer, name))


def _dense(layer, values, name, dtype) -> Step:
    if len(values[0].shape) != 1:
        raise untraceable("Dense", name, f"applied to an input of shape {values[0].shape}; the vocabulary's Dense "
                                         f"takes a vector (Flatten first)")
    kernel = ops.convert_to_numpy(layer.kernel)
    if values[0].perm is not None:  # rows of a channels-last flatten, in canonical C, H, W order
        kernel = kernel[values[0].perm]
    weights = {"weight": np.ascontiguousarray(kernel.T).astype(dtype)}
    if layer.use_bias:
        weights["bias"] = _array(layer.bias, dtype)
    node = S.Dense(out_features=int(layer.units), bias=bool(layer.use_bias))
    return Step([Piece(node, weights=weights)] + _fused(layer, name), perm=None)


def _channel_axis(axis, values: Sequence[Value]) -> bool:
    rank = len(values[0].shape)
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and int(axes[0]) in (-1, rank)


def _batchnorm(layer, values, name, dtype) -> Step:
    if not _channel_axis(layer.axis, values):
        raise untraceable("BatchNormalization", name, f"axis {layer.axis} is not the channel axis")
    if bool(layer.center) != bool(layer.scale):
        raise untraceable("BatchNormalization", name, f"center={layer.center}, scale={layer.scale}: the vocabulary's "
                                                      f"BatchNorm has both a scale and a shift or neither")
    roles = [("running_mean", layer.moving_mean), ("running_var", layer.moving_variance)]
    if layer.scale:
        roles = [("weight", layer.gamma), ("bias", layer.beta)] + roles
    perm = values[0].perm
    weights = {role: (_array(v, dtype) if perm is None else _array(v, dtype)[perm]) for role, v in roles}
    node = S.BatchNorm(eps=float(layer.epsilon), momentum=round(1.0 - float(layer.momentum), 12),
                       affine=bool(layer.scale), unbiased_running_var=False)
    return Step([Piece(node, weights=weights)])


def _activation_layer(layer, values, name, dtype) -> Step:
    kind = activation_kind(layer.activation, name)
    return Step([] if kind is None else [Piece(S.Activation(kind=kind))])


def _relu(layer, values, name, dtype) -> Step:
    if layer.max_value is not None or float(layer.negative_slope) != 0 or float(layer.threshold) != 0:
        raise untraceable("ReLU", name, f"max_value={layer.max_value}, negative_slope={layer.negative_slope}, "
                                        f"threshold={layer.threshold}: only the plain relu is in the vocabulary")
    return Step([Piece(S.Activation(kind="relu"))])


def _softmax(layer, values, name, dtype) -> Step:
    if not _channel_axis(layer.axis, values):
        raise untraceable("Softmax", name, f"axis {layer.axis} is not the channel axis")
    return Step([Piece(S.Activation(kind="softmax"))])


def _pool(layer, values, name, dtype) -> Step:
    _map_input(layer, values, name)
    window = dict(kernel=S.pair(tuple(layer.pool_size)), stride=S.pair(tuple(layer.strides or layer.pool_size)),
                  padding=_padding(layer.padding))
    if isinstance(layer, keras.layers.MaxPooling2D):
        return Step([Piece(S.MaxPool(**window))])
    return Step([Piece(S.AvgPool(**window, count_include_pad=layer.padding != "same"))])  # TensorFlow's rule


def _global_avg(layer, values, name, dtype) -> Step:
    _map_input(layer, values, name)
    keepdims = bool(layer.keepdims)
    return Step([Piece(S.GlobalAvgPool(keepdims=keepdims))], perm=KEEP if keepdims else None)


def _zero_pad(layer, values, name, dtype) -> Step:
    _map_input(layer, values, name)
    (top, bottom), (left, right) = layer.padding
    return Step([Piece(S.ZeroPad(padding=(int(top), int(bottom), int(left), int(right))))])


def flatten_perm(h: int, w: int, c: int) -> np.ndarray:
    """perm[i]: the position in a channels-last flatten of the canonical (C, H, W) position i."""
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


def _flatten(layer, values, name, dtype) -> Step:
    shape = values[0].shape
    if len(shape) == 1:
        return Step([])  # already a vector
    _map_input(layer, values, name)
    return Step([Piece(S.Flatten())], perm=flatten_perm(*shape))


def _dropout(layer, values, name, dtype) -> Step:
    return Step([Piece(S.Dropout(rate=float(layer.rate)))])


def _identity(layer, values, name, dtype) -> Step:
    return Step([])


def _vector_perms(values: Sequence[Value]) -> List[np.ndarray]:
    return [np.arange(v.shape[0]) if v.perm is None else v.perm for v in values]


def merge_add(values: Sequence[Value], op: str, name: str) -> Step:
    if len(values) < 2:
        raise untraceable(op, name, "an add of one tensor and a constant")
    if len({v.shape for v in values}) != 1:
        raise untraceable(op, name, f"adds tensors of shapes {[v.shape for v in values]} (broadcasting)")
    perms = _vector_perms(values) if len(values[0].shape) == 1 else []
    if any(not np.array_equal(p, perms[0]) for p in perms):
        raise untraceable(op, name, "adds vectors whose features are in different orders (a channels-last flatten "
                                    "and another)")
    return Step([Piece(merge="add")], perm=values[0].perm)


def merge_concat(values: Sequence[Value], axis: int, op: str, name: str) -> Step:
    if not _channel_axis(axis, values):
        raise untraceable(op, name, f"concatenates along axis {axis}, not the channel axis")
    if len(values[0].shape) != 1 or all(v.perm is None for v in values):
        return Step([Piece(merge="concat")], perm=None)
    offsets = np.cumsum([0] + [v.shape[0] for v in values])[:-1]
    perm = np.concatenate([p + o for p, o in zip(_vector_perms(values), offsets)])
    return Step([Piece(merge="concat")], perm=perm)


def _add_layer(layer, values, name, dtype) -> Step:
    return merge_add(values, "Add", name)


def _concat_layer(layer, values, name, dtype) -> Step:
    return merge_concat(values, layer.axis, "Concatenate", name)


Converter = Callable[[object, Sequence[Value], str, str], Step]
L = keras.layers
LAYERS: Dict[type, Converter] = {
    L.Conv2D: _conv, L.DepthwiseConv2D: _depthwise, L.Dense: _dense, L.BatchNormalization: _batchnorm,
    L.Activation: _activation_layer, L.ReLU: _relu, L.Softmax: _softmax, L.MaxPooling2D: _pool,
    L.AveragePooling2D: _pool, L.GlobalAveragePooling2D: _global_avg, L.ZeroPadding2D: _zero_pad,
    L.Flatten: _flatten, L.Dropout: _dropout, L.Add: _add_layer, L.Concatenate: _concat_layer,
    L.InputLayer: _identity, L.Identity: _identity,
}


def layer_converter(layer) -> Optional[Converter]:
    """The converter of a Keras layer class, or of a user's subclass of one that
    keeps its `call` (a subclass with its own call is traced through)."""
    for cls in type(layer).__mro__:
        if cls in LAYERS:
            return LAYERS[cls] if type(layer).call is cls.call else None
    return None


def convert_operation(op, values: Sequence[Value], name: str) -> Step:
    """A keras.ops operation recorded in a functional graph (`x + y`, `ops.relu`)."""
    kind = type(op).__name__
    if kind == "Add":
        return merge_add(values, "add", name)
    if kind in ("Relu", "Sigmoid", "Tanh"):
        return Step([Piece(S.Activation(kind=kind.lower()))])
    if kind == "Softmax":
        if not _channel_axis(getattr(op, "axis", -1), values):
            raise untraceable("softmax", name, f"axis {op.axis} is not the channel axis")
        return Step([Piece(S.Activation(kind="softmax"))])
    if kind == "Concatenate":
        return merge_concat(values, op.axis, "concatenate", name)
    raise untraceable(f"keras.ops {kind}", name)
