"""The MXNet Gluon backend: `BACKEND`, the contract of `refnets.backends.base` in Gluon.

Where Gluon's own layers do not compute exactly what the spec says, the layer is
realised explicitly (`layers`): asymmetric conv padding as a zero pad before a
valid conv, asymmetric or ceil-mode max pooling over an explicit -inf pad, and
such average pools as a zero-padded sum pool over the spec's divisor map. See
`training` for how BatchNorm's running statistics follow the spec's rule."""

from __future__ import annotations

from ..base import Backend
from . import build as _build
from . import run as _run
from . import training as _training
from . import weights as _weights
from .framework import versions as _versions


class MXNetBackend(Backend):
    name = "mxnet"
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
        return _training.gradients(net, x, labels, train)

    def Trainer(self, net, optimizer, lr, momentum=0.0):  # noqa: N802
        return _training.Trainer(net, optimizer, lr, momentum)

    def count_params(self, net):
        return _weights.count_params(net)

    def versions(self):
        return _versions()


BACKEND = MXNetBackend()
