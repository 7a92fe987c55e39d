"""Backends: one module per framework, each with the same functions.

    build(model: ModelSpec, dtype="float32") -> native model
    get_weights(model) -> canonical weights      set_weights(model, weights)
    forward(model, x, capture=(), train=False) -> (output, {path: activation})   (channels-first numpy)
    gradients(model, x, labels, train=False) -> Gradients
    Trainer(model, optimizer, lr, momentum=0.0).step(x, labels) -> loss
    count_params(model) -> (trainable, total)    versions() -> {package: version}

`forward` never changes the model: with `train=True` BatchNorm normalises with
the batch statistics, and the running statistics are left as they were.
`gradients` and `Trainer.step` are a training step: in training mode they update
the BatchNorm running statistics by the spec's rule (`spec.BatchNorm`), whatever
the framework's own rule (see each backend). The loss is the mean softmax
cross-entropy of the logits over the batch, computed by the framework's own loss;
labels are integer class indices.

A framework is imported only inside its own modules (`<name>_backend`, and
`<name>_port` for a user's own model), when that module is loaded.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict, List, NamedTuple

import numpy as np

BACKENDS = ("torch", "mxnet", "keras")
EXTRAS = {"torch": "torch", "mxnet": "mxnet", "keras": "keras"}
_MODULES = {"torch": "torch_backend", "mxnet": "mxnet_backend", "keras": "keras_backend"}
_FRAMEWORK_PACKAGE = {"torch": "torch", "mxnet": "mxnet", "keras": "keras"}


OPTIMIZERS = ("sgd", "momentum")


class Gradients(NamedTuple):
    """What `gradients` returns: the loss, the logits, d loss / d input
    (channels-first, like the input) and d loss / d parameter for every trainable
    canonical parameter, in the canonical layout (BatchNorm statistics excluded)."""

    loss: float
    logits: np.ndarray
    input: np.ndarray
    params: Dict[str, np.ndarray]


def heavy_ball_momentum(optimizer: str, momentum: float) -> float:
    """The momentum coefficient of `optimizer`: 0 for plain "sgd", `momentum` for
    "momentum" (heavy ball, no dampening, no Nesterov, no weight decay).

    Every backend uses its framework's own optimiser (torch.optim.SGD,
    keras.optimizers.SGD, Gluon's "sgd"). Their heavy-ball formulas agree for a
    constant learning rate lr: PyTorch keeps v <- mu*v + g, w <- w - lr*v;
    Keras and Gluon keep u <- mu*u - lr*g, w <- w + u. Both start from zero, so
    by induction u = -lr*v after every step and the weights are the same."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if optimizer == "sgd":
        return 0.0
    if not 0.0 < momentum < 1.0:
        raise ValueError(f"momentum must be in (0, 1) for the momentum optimiser, got {momentum!r}")
    return float(momentum)


class BackendUnavailableError(ImportError):
    """A backend's framework is not installed (or fails to import)."""


class UnknownBackendError(ValueError):
    pass


def check_name(name: str) -> str:
    if name not in BACKENDS:
        raise UnknownBackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return name


def get(name: str) -> ModuleType:
    """The backend module for `name`, importing its framework now."""
    check_name(name)
    try:
        return importlib.import_module(f"{__name__}.{_MODULES[name]}")
    except ImportError as err:
        raise BackendUnavailableError(
            f"backend {name!r} needs {_FRAMEWORK_PACKAGE[name]}, which could not be imported ({err}). "
            f"Install it with: pip install 'refnets[{EXTRAS[name]}]'") from err


def get_port(name: str) -> ModuleType:
    """The port adapter of `name` (a user's own native model, for `parity --port`),
    importing its framework now."""
    get(name)  # the framework, with its install hint when missing
    return importlib.import_module(f"{__name__}.{name}_port")


def is_installed(name: str) -> bool:
    """Whether the framework of `name` is installed, without importing it."""
    import importlib.util

    return importlib.util.find_spec(_FRAMEWORK_PACKAGE[check_name(name)]) is not None


def installed() -> List[str]:
    return [b for b in BACKENDS if is_installed(b)]
