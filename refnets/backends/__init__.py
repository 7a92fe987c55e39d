"""Backends: one module per framework, each with the same functions.

    build(model: ModelSpec, dtype="float32") -> native model
    get_weights(model) -> canonical weights      set_weights(model, weights)
    forward(model, x, capture=()) -> (output, {path: activation})   (channels-first numpy)
    count_params(model) -> (trainable, total)    versions() -> {package: version}

A framework is imported only inside its own modules (`<name>_backend`, and
`<name>_port` for a user's own model), when that module is loaded.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import List

BACKENDS = ("torch", "mxnet", "keras")
EXTRAS = {"torch": "torch", "mxnet": "mxnet", "keras": "keras"}
_MODULES = {"torch": "torch_backend", "mxnet": "mxnet_backend", "keras": "keras_backend"}
_FRAMEWORK_PACKAGE = {"torch": "torch", "mxnet": "mxnet", "keras": "keras"}


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
