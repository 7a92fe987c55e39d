"""The Keras 3 (TensorFlow) backend: `BACKEND`, the contract of
`refnets.backends.base` in Keras.

The model runs channels-last (NHWC) inside, because TensorFlow's CPU convolutions
support no other layout; the contract stays channels-first. `forward` takes and
returns NCHW arrays, and weights use the canonical layouts: conv kernels OIHW
(Keras HWIO), dense (out, in) (Keras (in, out)). A Flatten first transposes its
feature map to channels-first, so its C, H, W order matches the other backends
and dense weights need no reordering.

BatchNorm is `SpecBatchNormalization`: Keras's own layer, whose training-mode
update of the moving variance uses the unbiased batch variance where the spec
says so (Keras's own rule is the biased one); momentum maps to Keras's
convention as 1 - spec momentum (`layers.keras_momentum`)."""

from __future__ import annotations

from ..base import Backend
from . import build as _build
from . import run as _run
from . import weights as _weights
from .framework import versions as _versions


class KerasBackend(Backend):
    name = "keras"
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
        return _run.count_params(net)

    def versions(self):
        return _versions()


BACKEND = KerasBackend()
