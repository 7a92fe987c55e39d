"""The PyTorch backend: `BACKEND`, the contract of `refnets.backends.base` in torch."""

from __future__ import annotations

import copy

from ..base import ModuleBackend
from . import build, device, framework, run, weights


class TorchBackend(ModuleBackend):
    name = "torch"
    converters = build.CONVERTERS
    capabilities = ("inference", "capture", "gradients", "training")
    build_module, weights_module, run_module, framework_module = build, weights, run, framework
    training_module = run

    def on(self, where: str, tf32: bool = False) -> "TorchBackend":
        """This backend on `where` ("cpu", "cuda", "cuda:N"), with TF32 allowed on the GPU
        only when `tf32` (see `device`)."""
        device.check_device(where)
        placed = copy.copy(self)
        placed.device, placed.tf32 = where, bool(tf32)
        return placed

    def build(self, model, dtype="float32"):
        return build.build(model, dtype, device=self.device, tf32=self.tf32)

    def describe_device(self) -> str:
        return device.describe(device.check_device(self.device), self.tf32)

    def versions(self):
        return {**framework.versions(), **device.versions(device.check_device(self.device))}


BACKEND = TorchBackend()
