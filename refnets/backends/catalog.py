"""One record per backend and per framework zoo: what the CLI's choices, the
install hints, the availability checks and the benchmarks read. Adding a backend
is one package under `refnets/backends/` plus one record here.

Imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class BackendRecord:
    name: str
    package: str  # the backend package; importing it imports the framework
    framework: str  # the top-level module whose presence means the framework is installed
    install: str  # what installs it
    capabilities: Tuple[str, ...]  # see base.CAPABILITIES; "read": a reader of users' native models
    default: bool = True  # in the default backend set of a parity run when installed
    zoo: Optional[str] = None  # the framework's own model zoo (parity --against)
    devices: Tuple[str, ...] = ("cpu",)  # where its models can run: `torch:cuda` labels, parity --device
    # Whether its capturing forward (`stream`) computes exactly what its plain forward
    # does. Gluon's runs imperatively, as its hooks need, where the plain forward runs
    # the hybridized graph: resnet50v2's outputs differ by 5e-7 of their scale.
    capture_is_plain_forward: bool = True


@dataclass(frozen=True)
class ZooRecord:
    name: str
    label: str
    backend: str  # the backend package that holds its adapter (`<package>.zoo`)
    framework: str  # the module that must be installed to build its models
    install: str


_KERAS_INSTALL = "pip install 'refnets[tensorflow]' (or 'refnets[keras]' beside the TensorFlow you have)"
_FRAMEWORKS = ("inference", "capture", "gradients", "training", "read")

BACKENDS: Dict[str, BackendRecord] = {record.name: record for record in (
    BackendRecord("torch", "refnets.backends.torch", "torch", "pip install 'refnets[torch]'", _FRAMEWORKS,
                  zoo="torchvision", devices=("cpu", "cuda")),
    BackendRecord("mxnet", "refnets.backends.mxnet", "mxnet", "pip install 'refnets[mxnet]'", _FRAMEWORKS,
                  zoo="gluon", capture_is_plain_forward=False),
    # Keras 3 runs here on TensorFlow: TensorFlow present means the backend is (TF >= 2.16
    # requires Keras 3); Keras alone is not enough.
    BackendRecord("keras", "refnets.backends.keras", "tensorflow", _KERAS_INSTALL, _FRAMEWORKS,
                  zoo="keras"),
    # The framework-free reference: numpy interprets the spec. Opt-in (--backends numpy,...),
    # so a plain parity run still compares the frameworks with each other.
    BackendRecord("numpy", "refnets.backends.numpy_ref", "numpy", "pip install numpy",
                  ("inference", "capture", "gradients", "training"), default=False),
)}

ZOOS: Dict[str, ZooRecord] = {record.name: record for record in (
    ZooRecord("keras", "keras.applications", "keras", "tensorflow", _KERAS_INSTALL),
    ZooRecord("gluon", "gluon.model_zoo", "mxnet", "mxnet", "pip install 'refnets[mxnet]'"),
    ZooRecord("torchvision", "torchvision", "torch", "torchvision",
              "pip install torchvision (the build matching your torch)"),
)}


def names() -> Tuple[str, ...]:
    return tuple(BACKENDS)


def frameworks_with(capability: str) -> Tuple[str, ...]:
    """The backends whose record lists `capability`, in catalog order."""
    return tuple(name for name, record in BACKENDS.items() if capability in record.capabilities)
