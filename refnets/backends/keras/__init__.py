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

from ..base import ModuleBackend
from . import build, framework, run, weights


class KerasBackend(ModuleBackend):
    name = "keras"
    converters = build.CONVERTERS
    capabilities = ("inference", "capture", "gradients", "training")
    build_module, weights_module, run_module, framework_module = build, weights, run, framework
    training_module = run

    def count_params(self, net):
        return run.count_params(net)  # Keras counts its own variables


BACKEND = KerasBackend()
