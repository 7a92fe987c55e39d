"""The MXNet Gluon backend: `BACKEND`, the contract of `refnets.backends.base` in Gluon.

Where Gluon's own layers do not compute exactly what the spec says, the layer is
realised explicitly (`layers`): asymmetric conv padding as a zero pad before a
valid conv, asymmetric or ceil-mode max pooling over an explicit -inf pad, and
such average pools as a zero-padded sum pool over the spec's divisor map. See
`training` for how BatchNorm's running statistics follow the spec's rule."""

from __future__ import annotations

from ..base import ModuleBackend
from . import build, framework, run, weights
from . import training


class MXNetBackend(ModuleBackend):
    name = "mxnet"
    converters = build.CONVERTERS
    capabilities = ("inference", "capture", "gradients", "training")
    build_module, weights_module, run_module, framework_module = build, weights, run, framework
    training_module = training


BACKEND = MXNetBackend()
