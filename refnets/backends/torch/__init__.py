"""The PyTorch backend: `BACKEND`, the contract of `refnets.backends.base` in torch."""

from __future__ import annotations

from ..base import Backend
from . import build as _build
from . import run as _run
from . import weights as _weights
from .framework import versions as _versions


class TorchBackend(Backend):
    name = "torch"
    converters = _build.CONVERTERS
    capabilities = ("inference", "capture", "gradients", "training")

    def build(self, model, dtype="float32"):
        return _build.build(model, dtype)

    def get_weights(self, net):
        return _weights.get_weights(net)

    def set_weights(self, net, weights):
        _weights.set_weights(net, weights)

    def forward(self, net, x, capture=(), train=False):
        return _run.forward(net, x, capture, train)

    def gradients(self, net, x, labels, train=False):
        return _run.gradients(net, x, labels, train)

    def Trainer(self, net, optimizer, lr, momentum=0.0):  # noqa: N802
        return _run.Trainer(net, optimizer, lr, momentum)

    def count_params(self, net):
        return _weights.count_params(net)

    def versions(self):
        return _versions()


BACKEND = TorchBackend()
