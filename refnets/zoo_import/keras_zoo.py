"""keras.applications adapter: builds the zoo's model, describes its layers in the
canonical layout (through the Keras backend's layout helpers), runs it.

The zoo's layer names follow our spec paths: a path with the segments `res`,
`body`, `new`, `features` and `classifier` removed, joined by `_`, is the Keras
layer name (conv2.block1.res.body.1_conv -> conv2_block1_1_conv); VGG's last
dense is `predictions` (our fc3). Keras's VGG flattens channels-last (H, W, C):
its fc1 rows are reordered to the canonical C, H, W order.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from ..backends.keras import framework as KF  # sets KERAS_BACKEND before keras is imported
from ..backends.keras import run as KR
from ..backends.keras import weights as KB
from . import ZooEntry, spec_for
from .core import Binding, NativeLayer, Slot, bind_by_name

keras, tf, ops = KF.keras, KF.tf, KF.ops

DROP = frozenset({"res", "body", "new", "features", "classifier"})
LINEAR = "linear"


def keras_name(path: str, renames=()) -> str:
    name = "_".join(segment for segment in path.split(".") if segment not in DROP)
    return dict(renames).get(name, name)


def build(entry: ZooEntry, num_classes: int = 1000, input_shape=(3, 224, 224), dtype: str = "float32",
          seed: int = 0) -> keras.Model:
    """The zoo model with its own (seeded) initialisation, logits out
    (classifier_activation=None: our models end in the dense layer, no softmax).
    keras.applications models hold no input preprocessing."""
    c, h, w = input_shape
    keras.utils.set_random_seed(seed)
    previous = keras.config.floatx()
    keras.config.set_floatx(dtype)  # the zoo constructors take no dtype
    try:
        return getattr(keras.applications, entry.native)(
            weights=None, include_top=True, input_shape=(h, w, c), classes=num_classes, classifier_activation=None)
    finally:
        keras.config.set_floatx(previous)


def _slot(variable, layout: str, hwc=None) -> Slot:
    def read():
        return KB.to_canonical(ops.convert_to_numpy(variable), layout, hwc)

    def write(array):
        variable.assign(KB.from_canonical(np.asarray(array, dtype=variable.dtype), layout, hwc))

    return Slot(KB.canonical_shape(variable.shape, layout, hwc), read, write)


def _activation(layer) -> str | None:
    name = getattr(getattr(layer, "activation", None), "__name__", LINEAR)
    return None if name == LINEAR else name


def _flattened_map(layer) -> Tuple[int, int, int] | None:
    """(H, W, C) when `layer` is fed by a Flatten of a channels-last feature map."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1 or len(nodes[0].parent_nodes) != 1:
        return None
    parent = nodes[0].parent_nodes[0].operation
    if not isinstance(parent, keras.layers.Flatten):
        return None
    shape = tuple(parent.input.shape[1:])
    if len(shape) != 3 or getattr(parent, "data_format", "channels_last") != "channels_last":
        return None
    return shape


def layers(model: keras.Model) -> List[NativeLayer]:
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            if layer.data_format != "channels_last":
                raise TypeError(f"zoo layer {layer.name!r}: only channels_last models are supported")
            params = {"weight": _slot(layer.kernel, "conv")}
            if layer.use_bias:
                params["bias"] = _slot(layer.bias, "vector")
            out.append(NativeLayer(layer.name, "conv", params,
                                   {"stride": tuple(layer.strides), "activation": _activation(layer)}, layer.name))
        elif isinstance(layer, keras.layers.Dense):
            hwc = _flattened_map(layer)
            params = {"weight": _slot(layer.kernel, KB.NHWC_DENSE if hwc else "dense", hwc)}
            if layer.use_bias:
                params["bias"] = _slot(layer.bias, "vector")
            out.append(NativeLayer(layer.name, "dense", params, {"activation": _activation(layer)}, layer.name))
        elif isinstance(layer, keras.layers.BatchNormalization):
            params = {}
            if layer.scale:
                params["weight"] = _slot(layer.gamma, "vector")
            if layer.center:
                params["bias"] = _slot(layer.beta, "vector")
            params["running_mean"] = _slot(layer.moving_mean, "vector")
            params["running_var"] = _slot(layer.moving_variance, "vector")
            affine = True if (layer.scale and layer.center) else False if not (layer.scale or layer.center) \
                else f"scale={layer.scale}, center={layer.center}"
            out.append(NativeLayer(layer.name, "batchnorm", params, {"eps": float(layer.epsilon), "affine": affine},
                                   layer.name))
        elif layer.weights:
            raise TypeError(f"zoo layer {layer.name!r} ({type(layer).__name__}) holds weights the importer "
                            f"does not know")
    return out


def bind(model: keras.Model, arch=None, input_shape=None, **options) -> Binding:
    h, w, c = model.input_shape[1:]
    spec, entry = spec_for("keras", arch or model.name, input_shape=(c, h, w), **options)
    renames = entry.renames if entry else ()
    return Binding(spec, bind_by_name(spec, layers(model), lambda path: keras_name(path, renames)))


def _nhwc(x: np.ndarray, dtype) -> "tf.Tensor":
    return tf.constant(np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))), dtype=dtype)


def _nchw(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(array, (0, 3, 1, 2))) if array.ndim == 4 else array


def forward(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Inference-mode output for a channels-first batch."""
    return _nchw(ops.convert_to_numpy(model(_nhwc(x, model.inputs[0].dtype), training=False)))


def capture(model: keras.Model, points: Dict[str, NativeLayer], x: np.ndarray) -> Dict[str, np.ndarray]:
    """spec path -> output of its zoo layer (channels-first)."""
    paths = list(points)
    net = keras.Model(model.inputs, [model.get_layer(points[p].handle).output for p in paths])
    outs = net(_nhwc(x, model.inputs[0].dtype), training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return {p: _nchw(ops.convert_to_numpy(o)) for p, o in zip(paths, outs)}


def count_params(model: keras.Model) -> Tuple[int, int]:
    return KR.count_params(model)


def versions() -> Dict[str, str]:
    return KF.versions()
