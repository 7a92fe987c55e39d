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
from typing import Dict, List, Tuple

from . import catalog
from .base import (CAPABILITIES, OPTIMIZERS, Backend, BackendUnavailableError, CapabilityError, Converters,
                   Gradients, UnknownBackendError, UnsupportedNodeError, heavy_ball_momentum)

BACKENDS = catalog.names()
_LOADED: Dict[str, Backend] = {}
_PLACED: Dict[Tuple[str, bool], Backend] = {}


def parse_label(label: str) -> Tuple[str, str]:
    """`torch` -> ("torch", "cpu"); `torch:cuda` -> ("torch", "cuda"); `torch:cuda:1` ->
    ("torch", "cuda:1"). The device kind must be one the catalog record lists."""
    name, _, device = label.partition(":")
    check_name(name)
    device = device or "cpu"
    devices = catalog.BACKENDS[name].devices
    if device.split(":", 1)[0] not in devices:
        raise UnknownBackendError(f"the {name} backend runs on {', '.join(devices)}; {label!r} asks for {device!r}")
    return name, device


def check_name(label: str) -> str:
    """A known backend name, or a label `name:device` of a known device (see `parse_label`)."""
    name = label.partition(":")[0]
    if name not in catalog.BACKENDS:
        raise UnknownBackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name != label:
        parse_label(label)
    return label


def canonical_label(label: str) -> str:
    """`torch:cpu` -> `torch`: one key per backend and device."""
    name, device = parse_label(label)
    return name if device == "cpu" else f"{name}:{device}"


def on_device(label: str, device: str) -> str:
    """The label of `label`'s backend on `device` where that backend can run there and
    no device was named; otherwise `label` unchanged (parity --device cuda)."""
    name, current = parse_label(label)
    if label != name or device == "cpu" or device.split(":", 1)[0] not in catalog.BACKENDS[name].devices:
        return label
    return f"{name}:{device}"


def _import_package(name: str, module: str):
    record = catalog.BACKENDS[check_name(name)]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendUnavailableError(
            f"backend {name!r} needs {record.framework}, which could not be imported ({err}). "
            f"Install it with: {record.install}") from err


def get(label: str, tf32: bool = False) -> Backend:
    """The backend `label` (a name, or `name:device`, see `parse_label`), importing its
    framework now (BackendUnavailableError with the install command when it is
    missing, or when the device is not there). `tf32`: allow TF32 on a GPU.
    A `refnets.workers.WorkerBackend` when the backend runs in a worker process
    (see `refnets.workers.config`)."""
    from .. import workers

    name, device = parse_label(label)
    remote = workers.backend_for(canonical_label(label), tf32)
    if remote is not None:
        remote.hello()  # started, its framework imported (or the reason it could not be)
        return remote
    backend = _load(name)
    if device == "cpu":
        return backend
    if (label, bool(tf32)) not in _PLACED:
        _PLACED[label, bool(tf32)] = backend.on(device, tf32)
    return _PLACED[label, bool(tf32)]


def _load(name: str) -> Backend:
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


def is_installed(label: str) -> bool:
    """Whether the framework of `label`'s backend is installed, without importing it,
    or an interpreter is configured to run it in a worker (`refnets.workers.config`)."""
    from .. import workers

    name = parse_label(label)[0]
    return workers.is_configured(name) or importlib.util.find_spec(catalog.BACKENDS[name].framework) is not None


def installed() -> List[str]:
    """The installed backends of the default set (the frameworks), in catalog order."""
    return [name for name, record in catalog.BACKENDS.items() if record.default and is_installed(name)]


def has_capability(label: str, capability: str) -> bool:
    return capability in catalog.BACKENDS[parse_label(label)[0]].capabilities


__all__ = ["BACKENDS", "CAPABILITIES", "OPTIMIZERS", "Backend", "BackendUnavailableError", "CapabilityError",
           "Converters", "Gradients", "UnknownBackendError", "UnsupportedNodeError", "catalog", "check_name", "get",
           "get_reader", "has_capability", "heavy_ball_momentum", "installed", "is_installed", "on_device", "parse_label",
           "canonical_label"]
