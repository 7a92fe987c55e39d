"""keras.applications adapter: builds the zoo's model; its layers, forward and
capture are the Keras reader's (`read`).

The zoo's layer names follow our spec paths: a path with the segments `res`,
`body`, `new`, `features` and `classifier` removed, joined by `_`, is the Keras
layer name (conv2.block1.res.body.1_conv -> conv2_block1_1_conv); VGG's last
dense is `predictions` (our fc3). Keras's VGG flattens channels-last (H, W, C):
its fc1 rows are reordered to the canonical C, H, W order.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from ...native import NativeLayer
from ...zoo_import import ZooEntry, spec_for
from ...zoo_import.core import Binding, bind_by_name
from . import read
from .framework import keras
from .run import count_params  # noqa: F401 (the adapter's count_params)

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


def layers(model: keras.Model) -> List[NativeLayer]:
    """The zoo model's weighted layers (the Keras reader's), channels-last only."""
    out = []
    for layer in read.layers(model):
        if layer.kind == "other":
            raise TypeError(f"zoo layer {layer.name!r} ({layer.type_name}) holds weights the importer "
                            f"does not know")
        if layer.kind == "conv" and layer.config["data_format"] != "channels_last":
            raise TypeError(f"zoo layer {layer.name!r}: only channels_last models are supported")
        out.append(layer)
    return out


def bind(model: keras.Model, arch=None, input_shape=None, **options) -> Binding:
    h, w, c = model.input_shape[1:]
    spec, entry = spec_for("keras", arch or model.name, input_shape=(c, h, w), **options)
    renames = entry.renames if entry else ()
    return Binding(spec, bind_by_name(spec, layers(model), lambda path: keras_name(path, renames)))


def forward(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Inference-mode output for a channels-first batch."""
    return read.forward(model, x)[0]


def capture(model: keras.Model, points: Dict[str, NativeLayer], x: np.ndarray) -> Dict[str, np.ndarray]:
    """spec path -> output of its zoo layer (channels-first; the Keras reader's capture)."""
    _, store = read.forward(model, x, [layer.name for layer in points.values()])
    return {path: store[layer.name][1] for path, layer in points.items()}


def versions() -> Dict[str, str]:
    return read.versions()
