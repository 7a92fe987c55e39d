"""Backends: one package per framework (and `numpy_ref`, the framework-free
reference), each holding a `base.Backend` and listed in `catalog`.

    backends.get("torch") -> Backend      build, get_weights, set_weights, forward,
                                          gradients, Trainer, count_params, versions
    backends.get_reader("keras")          a native model read: its parameterised layers, their
                                          graph inputs and captures (port checking, zoo import)

See `base` for the contract. A framework is imported only inside its own
package, when `get` (or `get_reader`) loads it.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Dict, List

from . import catalog
from .base import (CAPABILITIES, OPTIMIZERS, Backend, BackendUnavailableError, CapabilityError, Converters,
                   Gradients, UnknownBackendError, UnsupportedNodeError, heavy_ball_momentum)

BACKENDS = catalog.names()
_LOADED: Dict[str, Backend] = {}


def check_name(name: str) -> str:
    if name not in catalog.BACKENDS:
        raise UnknownBackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return name


def _import_package(name: str, module: str):
    record = catalog.BACKENDS[check_name(name)]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendUnavailableError(
            f"backend {name!r} needs {record.framework}, which could not be imported ({err}). "
            f"Install it with: {record.install}") from err


def get(name: str) -> Backend:
    """The backend `name`, importing its framework now (BackendUnavailableError
    with the install command when it is missing); a `refnets.workers.WorkerBackend`
    when `name` runs in a worker process (see `refnets.workers.config`)."""
    from .. import workers

    remote = workers.backend_for(check_name(name))
    if remote is not None:
        remote.hello()  # started, its framework imported (or the reason it could not be)
        return remote
    if name not in _LOADED:
        package = _import_package(name, catalog.BACKENDS[check_name(name)].package)
        backend = package.BACKEND
        if not isinstance(backend, Backend):
            raise TypeError(f"{package.__name__}.BACKEND is not a refnets Backend")
        _LOADED[name] = backend
    return _LOADED[name]


def get_reader(name: str):
    """The reader of `name`'s native models (`<package>.read`: a user's port, a zoo
    model), importing its framework now; CapabilityError for a backend without one."""
    record = catalog.BACKENDS[check_name(name)]
    if "read" not in record.capabilities:
        raise CapabilityError(f"the {name} backend has no reader of native models")
    return _import_package(name, f"{record.package}.read")


def is_installed(name: str) -> bool:
    """Whether the framework of `name` is installed, without importing it, or an
    interpreter is configured to run it in a worker (`refnets.workers.config`)."""
    from .. import workers

    return workers.is_configured(check_name(name)) or \
        importlib.util.find_spec(catalog.BACKENDS[name].framework) is not None


def installed() -> List[str]:
    """The installed backends of the default set (the frameworks), in catalog order."""
    return [name for name, record in catalog.BACKENDS.items() if record.default and is_installed(name)]


def has_capability(name: str, capability: str) -> bool:
    return capability in catalog.BACKENDS[check_name(name)].capabilities


__all__ = ["BACKENDS", "CAPABILITIES", "OPTIMIZERS", "Backend", "BackendUnavailableError", "CapabilityError",
           "Converters", "Gradients", "UnknownBackendError", "UnsupportedNodeError", "catalog", "check_name", "get",
           "get_reader", "has_capability", "heavy_ball_momentum", "installed", "is_installed"]
