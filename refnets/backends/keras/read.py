"""The reader of a native Keras model (a user's port, a keras.applications model):
its parameterised layers with their configuration and graph inputs (the
functional graph), canonical weights read and written through slots, and the one
capture of their inputs and outputs.

Supported: functional and Sequential models (a symbolic graph to read layer inputs
and outputs from), channels-last or channels-first. Conversions are the Keras
backend's (`weights`): kernels HWIO, dense kernels (in, out), and a Dense fed by a
Flatten of a channels-last map takes its rows in H, W, C order (so a channels-last
port that flattens natively is not a flatten bug). Captured values are given back
channels-first, a flattened dense input in C, H, W order. A layer with a fused
activation (`Conv2D(..., activation="relu")`) reports it in `config["activation"]`:
its captured output is after that activation.
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ... import native
from ...native import NativeLayer, PortModelError, Slot
from .framework import keras, ops
from .framework import versions as versions  # noqa: PLC0414 (the reader contract's versions())
from .weights import NHWC_DENSE, ROLES, canonical_shape, from_canonical, to_canonical

_KINDS = ((keras.layers.Conv2D, "conv"), (keras.layers.Dense, "dense"), (keras.layers.BatchNormalization, "batchnorm"))


def is_model(obj) -> bool:
    return isinstance(obj, keras.Model)


@contextlib.contextmanager
def loading(dtype: str):
    """The user's factory runs with Keras's float type and dtype policy set to the
    run's dtype, so a float64 run gets float64 layers."""
    previous = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous[0])
        keras.config.set_dtype_policy(previous[1])


def prepare(model, dtype: str):
    if not is_model(model):
        raise PortModelError(f"the port callable must return a keras.Model, got {type(model).__name__}")
    if not _has_graph(model):
        raise PortModelError("a subclassed keras.Model has no graph to read layer inputs and outputs from; "
                             "build the port as a functional or Sequential model")
    wrong = sorted({str(w.dtype) for w in model.weights} - {dtype})
    if wrong:
        raise PortModelError(f"the port's weights are {', '.join(wrong)}, the run is {dtype}: build it under "
                             f"keras.config.set_floatx('{dtype}') (the port callable already runs so)")
    return model


def _has_graph(model) -> bool:
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):  # a subclassed model, or a Sequential without an input
        return False


def _channels_last(model) -> bool:
    convs = [l for l in _layers(model) if isinstance(l, keras.layers.Conv2D)]
    return not convs or convs[0].data_format == "channels_last"


def _layers(model) -> List[keras.layers.Layer]:
    return [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]


def _kind(layer) -> str:
    for cls, kind in _KINDS:
        if isinstance(layer, cls) and type(layer).__name__ not in ("DepthwiseConv2D", "SeparableConv2D"):
            return kind
    return "other"


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> Tuple[int, int]:
    """TensorFlow's 'same': the extra pixel goes after (bottom / right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial(shape, data_format: str) -> Tuple[Optional[int], Optional[int]]:
    return (shape[1], shape[2]) if data_format == "channels_last" else (shape[2], shape[3])


def _conv_padding(layer, size: Optional[Tuple[int, int]] = None) -> Tuple[int, int, int, int]:
    """Per-side padding of a conv. TensorFlow's 'same' depends on the input size
    only where the stride is not 1: a free size (None) needs `size`, the input
    size of this call (see `_input_sizes`)."""
    if layer.padding == "valid":
        return (0, 0, 0, 0)
    h, w = size or _spatial(layer.input.shape, layer.data_format)
    sides = []
    for extent, k, s, d in zip((h, w), layer.kernel_size, layer.strides, layer.dilation_rate):
        if extent is None and s != 1:
            raise PortModelError(f"layer '{layer.name}' pads 'same' with stride {s} on an input of free size: "
                                 f"its padding depends on the input size, which was not given")
        sides += _same_padding(extent if extent is not None else k, k, s, d)
    return tuple(sides)


def _input_sizes(model, x: Optional[np.ndarray]) -> Dict[str, Tuple[int, int]]:
    """Conv name -> (height, width) of its input on `x`, for the 'same' convs whose
    input size the model leaves free (Keras works them out symbolically)."""
    free = [l for l in _layers(model) if _kind(l) == "conv" and l.padding == "same"
            and None in _spatial(l.input.shape, l.data_format)]
    if x is None or not free:
        return {}
    probe = keras.Model(model.inputs, [l.input for l in free])
    shape = _native(x, _channels_last(model)).shape
    found = probe.compute_output_spec(keras.KerasTensor(shape, dtype=model.inputs[0].dtype))
    found = found if isinstance(found, (list, tuple)) else [found]
    return {l.name: _spatial(t.shape, l.data_format) for l, t in zip(free, found)}


def _flattened_hwc(layer) -> Optional[Tuple[int, int, int]]:
    """(H, W, C) when a Dense is fed by a Flatten of a channels-last map."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1 or len(nodes[0].parent_nodes) != 1:
        return None
    source = nodes[0].parent_nodes[0].operation
    if isinstance(source, keras.layers.Flatten) and getattr(source, "data_format", "channels_last") == "channels_last":
        shape = source.input.shape
        if len(shape) == 4:
            return tuple(int(v) for v in shape[1:])
    return None


def variable_slot(variable, layout: str, hwc=None) -> Slot:
    def read():
        return to_canonical(ops.convert_to_numpy(variable), layout, hwc)

    def write(array):
        variable.assign(from_canonical(np.asarray(array, dtype=variable.dtype), layout, hwc))

    return Slot(canonical_shape(variable.shape, layout, hwc), read, write)


def _slots(layer, kind: str) -> Dict[str, Slot]:
    """role -> Slot of each parameter present."""
    hwc = _flattened_hwc(layer) if kind == "dense" else None
    slots = {}
    for role, attribute, layout in ROLES[kind]:
        variable = getattr(layer, attribute, None)
        if variable is not None:
            slots[role] = variable_slot(variable, NHWC_DENSE if (hwc and role == "weight") else layout, hwc)
    return slots


def _activation(layer) -> str:
    fn = getattr(layer, "activation", None)
    return "linear" if fn is None else getattr(fn, "__name__", str(fn))


def _inputs(layer) -> Optional[Tuple[str, ...]]:
    """The layers feeding `layer` in the functional graph ("<input>": the model input)."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1:
        return None
    names = []
    for parent in nodes[0].parent_nodes:
        operation = parent.operation
        names.append("<input>" if isinstance(operation, keras.layers.InputLayer) else operation.name)
    return tuple(names) or ("<input>",)


def describe(layer, size: Optional[Tuple[int, int]] = None) -> NativeLayer:
    """The layer for the port check; `size`: its input's (height, width) on this
    run's input, where the model leaves it free."""
    kind = _kind(layer)
    if len(layer._inbound_nodes) > 1:
        raise PortModelError(f"layer '{layer.name}' is called more than once; shared weights cannot be mapped "
                             f"one-to-one onto the reference")
    if kind == "other":
        return NativeLayer(layer.name, "other", type(layer).__name__, handle=layer,
                           other_params={v.path: tuple(v.shape) for v in layer.weights})
    config: Dict[str, object] = {}
    if kind == "conv":
        config = {"stride": tuple(layer.strides), "padding": _conv_padding(layer, size),
                  "dilation": tuple(layer.dilation_rate), "groups": layer.groups,
                  "data_format": layer.data_format}
    if kind == "batchnorm":
        affine = True if (layer.scale and layer.center) else False if not (layer.scale or layer.center) \
            else f"scale={layer.scale}, center={layer.center}"
        config = {"eps": float(layer.epsilon), "affine": affine}
    if kind in ("conv", "dense") and _activation(layer) != "linear":
        config["activation"] = _activation(layer)
    return NativeLayer(layer.name, kind, type(layer).__name__, _slots(layer, kind), config, _inputs(layer), layer)


def layers(model, x: Optional[np.ndarray] = None) -> List[NativeLayer]:
    """Layers holding weights in the graph's order (Keras lists a functional
    model's layers topologically); given an input, it is checked against the model's."""
    for layer in _layers(model):
        if isinstance(layer, keras.Model):
            raise PortModelError(f"layer '{layer.name}' is a nested model; pass a flat functional model")
    if x is not None:
        _check_input(model, x, _channels_last(model))
    sizes = _input_sizes(model, x)
    return [describe(layer, sizes.get(layer.name)) for layer in _layers(model) if layer.weights]


def unused(model, called: Sequence[str]) -> List[str]:
    return []  # a layer outside the graph is not part of a functional model


def set_params(model, assignment: Dict[str, Dict[str, np.ndarray]]) -> None:
    native.assign({name: _parameters(model.get_layer(name)) for name in assignment}, assignment)


def _parameters(layer) -> NativeLayer:
    """The layer's parameter slots only (its configuration may need the input size)."""
    kind = _kind(layer)
    return NativeLayer(layer.name, kind, type(layer).__name__, _slots(layer, kind) if kind != "other" else {})


def _check_input(model, x: np.ndarray, channels_last: bool) -> None:
    expected = tuple(model.inputs[0].shape[1:])
    given = _native(x, channels_last).shape[1:]
    if any(e is not None and e != g for e, g in zip(expected, given)) or len(expected) != len(given):
        raise PortModelError(f"the port takes inputs of shape {expected}, the reference's input is {given} "
                             f"({'channels-last' if channels_last else 'channels-first'})")


def _native(x: np.ndarray, channels_last: bool) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))) if channels_last else x


def _canonical(array: np.ndarray, channels_last: bool, hwc=None) -> np.ndarray:
    if hwc is not None:  # a dense input flattened channels-last -> C, H, W order
        h, w, c = hwc
        return np.ascontiguousarray(array.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(array.shape[0], -1))
    if array.ndim == 4 and channels_last:
        return np.ascontiguousarray(np.transpose(array, (0, 3, 1, 2)))
    return array


def forward(model, x: np.ndarray, capture: Sequence[str] = ()):
    channels_last = _channels_last(model)  # once: it reads the model's layers
    _check_input(model, x, channels_last)
    tensors = [model.outputs[0]]
    for name in capture:
        layer = model.get_layer(name)
        tensors += [layer.input, layer.output]
    net = keras.Model(model.inputs, tensors) if capture else model
    outs = net(ops.convert_to_tensor(_native(x, channels_last)), training=False)
    arrays = [ops.convert_to_numpy(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
    store = {}
    for i, name in enumerate(capture):
        layer = model.get_layer(name)
        hwc = _flattened_hwc(layer) if _kind(layer) == "dense" else None
        store[name] = (_canonical(arrays[1 + 2 * i], channels_last, hwc),
                       _canonical(arrays[2 + 2 * i], channels_last))
    return _canonical(arrays[0], channels_last), store
