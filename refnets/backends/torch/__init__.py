"""The PyTorch backend: `BACKEND`, the contract of `refnets.backends.base` in torch."""

from __future__ import annotations

from ..base import ModuleBackend
from . import build, framework, run, weights


class TorchBackend(ModuleBackend):
    name = "torch"
    converters = build.CONVERTERS
    capabilities = ("inference", "capture", "gradients", "training")
    build_module, weights_module, run_module, framework_module = build, weights, run, framework
    training_module = run


BACKEND = TorchBackend()
