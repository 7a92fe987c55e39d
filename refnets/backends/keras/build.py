"""Spec -> functional `keras.Model` (NHWC inside). One registered converter per
node type (`CONVERTERS`): each adds the layer(s) realising its node on input `x`
and returns the output tensor.

Every layer that realises a spec node is named by the node's dotted path;
helper layers are named `<path>_pad` (explicit padding) and `<path>_chw` (the
transpose before a Flatten). A Sequential or Identity node has no layer of its
own: its output is the tensor of its last child or its input. A Shared node has
none either: it calls its target's layers (the same objects) once more.

The build also records, per node, the layer objects that realise it (`Bindings.steps`),
so `execute` can run the model eagerly over the spec without a second copy of
the node -> layer logic."""

from __future__ import annotations

from typing import Dict, List, Tuple

from ... import rules, shapes
from ... import spec as S
from ..base import Converters
from .framework import CHANNELS_LAST, DTYPES, keras
from . import layers
from .layers import (AdaptiveAveragePooling2D, ConstantPadding2D, DivisorAveragePooling2D, SpecBatchNormalization,
                     StridedDilatedConv2D)

INPUT_NAME = "input"
ROOT_NAME = "root"  # the layer name of a root node that needs a layer (a leaf or a Parallel)
CONVERTERS = Converters("keras")


@CONVERTERS.register(S.Conv2d)
def _conv(node: S.Conv2d, info, x, name: str, dtype: str):
    node = rules.with_resolved_padding(node, info.in_shape[1:])  # 'same' as explicit numbers, like any padding
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


@CONVERTERS.register(S.MaxPool)
def _maxpool(node: S.MaxPool, info: shapes.NodeInfo, x, name: str, dtype: str):
    padding = shapes.pool_window_padding(node, info.in_shape[1:])
    if any(padding):
        x = ConstantPadding2D(padding, float("-inf"), dtype=dtype, name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(node.kernel, node.stride, padding="valid", data_format=CHANNELS_LAST,
                                     dtype=dtype, name=name)(x)


@CONVERTERS.register(S.AvgPool)
def _avgpool(node: S.AvgPool, info: shapes.NodeInfo, x, name: str, dtype: str):
    node = rules.with_resolved_padding(node, info.in_shape[1:])
    if not any(shapes.pool_window_padding(node, info.in_shape[1:])):
        return keras.layers.AveragePooling2D(node.kernel, node.stride, padding="valid",
                                             data_format=CHANNELS_LAST, dtype=dtype, name=name)(x)
    return DivisorAveragePooling2D(node.kernel, node.stride, node.padding, node.ceil_mode,
                                   node.count_include_pad, dtype=dtype, name=name)(x)


@CONVERTERS.register(S.Flatten)
def _flatten(node: S.Flatten, info: shapes.NodeInfo, x, name: str, dtype: str):
    if len(info.in_shape) == 3:  # NHWC -> NCHW first: the canonical C, H, W order
        x = keras.layers.Permute((3, 1, 2), dtype=dtype, name=f"{name}_chw")(x)
    return keras.layers.Flatten(data_format=CHANNELS_LAST, dtype=dtype, name=name)(x)


@CONVERTERS.register(S.Dense)
def _dense(node: S.Dense, info, x, name: str, dtype: str):
    return keras.layers.Dense(node.out_features, use_bias=node.bias, dtype=dtype, name=name)(x)


@CONVERTERS.register(S.BatchNorm)
def _batchnorm(node: S.BatchNorm, info, x, name: str, dtype: str):
    return SpecBatchNormalization(axis=-1, epsilon=node.eps, momentum=layers.keras_momentum(node),
                                  scale=node.affine, center=node.affine,
                                  unbiased_running_var=node.unbiased_running_var, dtype=dtype, name=name)(x)


@CONVERTERS.register(S.Activation)
def _activation(node: S.Activation, info, x, name: str, dtype: str):
    return keras.layers.Activation(node.kind, dtype=dtype, name=name)(x)


@CONVERTERS.register(S.GlobalAvgPool)
def _global_avgpool(node: S.GlobalAvgPool, info, x, name: str, dtype: str):
    return keras.layers.GlobalAveragePooling2D(data_format=CHANNELS_LAST, keepdims=node.keepdims, dtype=dtype,
                                               name=name)(x)


@CONVERTERS.register(S.AdaptiveAvgPool)
def _adaptive_avgpool(node: S.AdaptiveAvgPool, info, x, name: str, dtype: str):
    return AdaptiveAveragePooling2D(node.output_size, dtype=dtype, name=name)(x)


@CONVERTERS.register(S.ZeroPad)
def _zero_pad(node: S.ZeroPad, info, x, name: str, dtype: str):
    t, b, l, r = node.padding
    return keras.layers.ZeroPadding2D(((t, b), (l, r)), data_format=CHANNELS_LAST, dtype=dtype, name=name)(x)


@CONVERTERS.register(S.Dropout)
def _dropout(node: S.Dropout, info, x, name: str, dtype: str):
    return keras.layers.Dropout(node.rate, dtype=dtype, name=name)(x)


@CONVERTERS.register(S.Identity)
def _identity(node, info, x, name: str, dtype: str):
    """No layer: the node's output is its input tensor."""
    return x


@CONVERTERS.register(S.Shared)
def _shared(node: S.Shared, info, x, name: str, dtype: str, target: Tuple):
    """No layer of its own: the target's layers (its recorded step), called again."""
    for layer in target:
        x = layer(x)
    return x


def applied_layers(x, out) -> Tuple:
    """The layers a converter applied, in order, to get from tensor `x` to `out`
    (a chain: every node's layers take one input), read from Keras's graph."""
    chain = []
    while out is not x:
        layer, node_index, _ = out._keras_history
        chain.append(layer)
        (out,) = layer._inbound_nodes[node_index].input_tensors
    return tuple(reversed(chain))


def merge_input(outs: List):
    """What a Parallel's merge layer is called with: the lone branch's output, or
    the list of them (used by the build and by `execute` alike)."""
    return outs[0] if len(outs) == 1 else outs


def _merge_layer(node: S.Parallel, branches: int, name: str, dtype: str):
    if branches == 1:
        return keras.layers.Identity(dtype=dtype, name=name)
    if node.merge == "add":
        return keras.layers.Add(dtype=dtype, name=name)
    return keras.layers.Concatenate(axis=-1, dtype=dtype, name=name)  # channels, maps or vectors


def _emit(node: S.Node, path: str, x, infos: Dict[str, shapes.NodeInfo], dtype: str, tensors: Dict, steps: Dict):
    """Add the layers of `node` (at `path`) on input `x`; record every node's
    output tensor in `tensors` and the layers realising it in `steps` by path
    (a leaf's or Shared node's chain, padding and transpose helpers included; a
    Parallel's merge layer, as a 1-tuple; a Sequential has none); return the
    node's output. A Shared node's converter reuses its target's recorded chain."""
    name = path or ROOT_NAME
    if isinstance(node, S.Sequential):
        for index, child in enumerate(node.children):
            x = _emit(child, S.join(path, S.child_segment(child, index)), x, infos, dtype, tensors, steps)
    elif isinstance(node, S.Parallel):
        outs = [_emit(b, S.join(path, S.child_segment(b, i)), x, infos, dtype, tensors, steps)
                for i, b in enumerate(node.branches)]
        merge = _merge_layer(node, len(outs), name, dtype)
        steps[path] = (merge,)
        x = merge(merge_input(outs))
    else:
        target = {"target": steps[node.target]} if isinstance(node, S.Shared) else {}
        out = CONVERTERS.convert(node, infos[path], x, name, dtype, **target)
        steps[path] = target["target"] if target else applied_layers(x, out)
        x = out
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


class Bindings:
    """What the backend keeps on a built model (a plain object, so Keras does
    not track it): the spec, each node's output tensor and layers (`steps`, see
    `_emit`), the compiled forwards by mode and the modes run eagerly once."""

    def __init__(self, spec: S.ModelSpec, dtype: str, tensors: Dict, steps: Dict[str, Tuple]):
        self.spec, self.dtype, self.tensors, self.steps = spec, dtype, tensors, steps
        self.compiled: Dict[bool, object] = {}
        self.ran_eagerly: set = set()


def build(model: S.ModelSpec, dtype: str = "float32") -> keras.Model:
    """A functional `keras.Model` taking NHWC input of shape (H, W, C), with
    Keras's own initialisers; every layer computes in `dtype`."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    infos = shapes.infer(model)
    c, h, w = model.input_shape
    inputs = keras.Input((h, w, c), dtype=dtype, name=INPUT_NAME)
    tensors: Dict[str, object] = {}
    steps: Dict[str, Tuple] = {}
    outputs = _emit(model.root, "", inputs, infos, dtype, tensors, steps)
    _check_shapes(model, infos, tensors)
    net = keras.Model(inputs, outputs, name=model.name)
    net.refnets_spec = model
    net._refnets = Bindings(model, dtype, tensors, steps)
    return net


def bindings_of(model: keras.Model) -> Bindings:
    found = getattr(model, "_refnets", None)
    if not isinstance(found, Bindings):
        raise TypeError("not a model built by refnets' keras backend")
    return found
