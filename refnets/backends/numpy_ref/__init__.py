"""The numpy reference backend: a plain, framework-free interpreter of the spec.

It belongs to no framework, so it is the reference the frameworks can be held
against. Computation happens in the model's dtype (float32 stays float32).

Capabilities: inference, capture, gradients (a hand-written backward pass for
every node type) and training (SGD / heavy-ball momentum).

Dropout: the identity in inference mode; in training mode (forward(train=True),
gradients(train=True), Trainer) a Dropout with rate > 0 raises
`DropoutInTrainingError`, since no framework's random mask can be reproduced:
replace Dropout by Identity first (`spec.without_dropout`), as parity's
training runs do.
"""

from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import numpy as np

from ... import shapes
from ... import spec as S
from ...weights import Weights, check, init
from ..base import Backend, Gradients
from . import run
from . import train as training
from .build import DropoutInTrainingError, NumpyModel, converters, make_tree  # noqa: F401

DTYPES = ("float32", "float64")


class NumpyBackend(Backend):
    name = "numpy"
    converters = converters
    capabilities = ("inference", "capture", "gradients", "training")

    def build(self, model: S.ModelSpec, dtype: str = "float32") -> NumpyModel:
        """The model with seeded parameters (`weights.init(seed=0)`); raises
        InputTooSmallError when the spec's input shape is too small for a node."""
        if str(dtype) not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        np_dtype = np.dtype(str(dtype))
        infos = shapes.infer(model)
        tree = make_tree(model.root, "", infos, np_dtype)
        return NumpyModel(model, np_dtype, init(model, seed=0, dtype=np_dtype), tree, infos)

    def get_weights(self, net: NumpyModel) -> Weights:
        return {name: value.copy() for name, value in net.params.items()}

    def set_weights(self, net: NumpyModel, weights: Weights) -> None:
        check({name: value.shape for name, value in net.params.items()}, weights)
        for name in net.params:
            net.params[name] = np.array(weights[name], dtype=net.dtype, copy=True)

    def forward(self, net: NumpyModel, x: np.ndarray, capture: Sequence[str] = (),
                train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        return run.forward(net, x, capture, train)

    def stream(self, net: NumpyModel, x: np.ndarray, capture: Sequence[str], sink, train: bool = False) -> np.ndarray:
        return run.stream(net, x, capture, sink, train)

    def gradients(self, net: NumpyModel, x: np.ndarray, labels: np.ndarray, train: bool = False) -> Gradients:
        return training.gradients(net, x, labels, train)

    def Trainer(self, net: NumpyModel, optimizer: str, lr: float, momentum: float = 0.0):  # noqa: N802
        return training.Trainer(net, optimizer, lr, momentum)

    def count_params(self, net: NumpyModel) -> Tuple[int, int]:
        sizes = {name: math.prod(value.shape) for name, value in net.params.items()}
        trainable = sum(size for name, size in sizes.items() if not name.endswith(shapes.BN_STATISTICS))
        return trainable, sum(sizes.values())

    def versions(self) -> Dict[str, str]:
        return {"numpy": np.__version__}


BACKEND = NumpyBackend()
