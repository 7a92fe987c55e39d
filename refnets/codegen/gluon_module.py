"""A whole generated MXNet Gluon module: docstring, imports, the helpers it needs,
one HybridBlock class per block kind, the stage tables, the model class, `build`
and `load_canonical`. The class and stage plan is the PyTorch module's
(`torch_module`); the blocks are Gluon's (`emit_gluon`).

This module imports no framework.
"""

from __future__ import annotations

import re

from .. import spec as S
from . import gluon_helpers, notes
from .emit_gluon import GluonClassWriter
from .plan import Plan
from .torch_module import TorchEmitter
from .writer import Source

PHRASES = {
    "key": "mxnet",
    "momentum": "(PyTorch's convention: the weight of the new batch statistic; Gluon's momentum, the "
                "weight of the old one, is 1 minus it)",
    "biased": "the running variance is updated with the biased batch variance in training (Gluon's own "
              "rule)",
    "affine": "center=False, scale=False: no learned scale and shift (Gluon still holds a fixed gamma and "
              "beta, which are no canonical weights)",
    "conv_sym": "symmetric padding is the conv's own zero padding",
    "conv_asym": "padding that differs per side is an explicit zero pad before an unpadded conv "
                 "(PaddedConv2D)",
    "conv_same": "'same' (TensorFlow's rule) is resolved for the spec's input size when the source is "
                 "generated: a hybridized Gluon graph cannot work it out per input, so the model is for that "
                 "input size only",
    "zeropad": "A ZeroPad layer (ZeroPad2D) pads with zeros, which can win a max pool; a pool's own "
               "padding is -inf for a max pool and never wins.",
    "pool": "Pools: nn.MaxPool2D / nn.AvgPool2D with their own padding where they can take it "
            "(symmetric, at most half the window, floor mode), else PaddedPool2D.",
    "ceil": "ceil_mode=True follows PyTorch (a window that would start in the bottom / right padding is "
            "dropped), not MXNet's 'full' convention: the overhang is resolved for the spec's input size, "
            "so the model is for that input size only.",
    "divisor": "Average pools divide by PyTorch's rule: with count_include_pad the padding is counted "
               "(not the ceil-mode overhang), without it only input cells.",
    "flatten": "Flatten (nn.Flatten on N, C, H, W) gives features in C, H, W order, the canonical dense "
               "layout.",
    "gap": "Global average pooling is the mean over height and width.",
    "adaptive": "Adaptive average pooling is MXNet's contrib AdaptiveAvgPooling2D, whose windows are "
                "PyTorch's: output cell i of n over a size-L axis averages "
                "cells floor(i * L / n) to ceil((i + 1) * L / n) - 1.",
    "softmax": "Softmax is over the channel axis (axis=1).",
    "shared": "A layer applied twice is one block called twice: its weights appear once, under its first "
              "name.",
}

USAGE = """Use:

    model = build()  # or build(num_classes=...) where the model takes options
    load_canonical(model, "weights.safetensors")
    logits = model(images)  # mx.nd.array, N, C, H, W"""


class GluonEmitter(TorchEmitter):
    WRITER = GluonClassWriter

    def __init__(self, plan: Plan, origin: str):
        super().__init__(plan, origin)
        taken = set(gluon_helpers.ORDER) | {c.name for c in plan.classes}
        for cls in plan.classes:  # a model named like a helper ("identity") keeps the helper's name free
            if cls.name in gluon_helpers.ORDER:
                while cls.name in taken:
                    cls.name += "Net"
                taken.add(cls.name)

    def module_doc(self) -> str:
        text = notes.module_doc(self.plan, "MXNet Gluon", PHRASES, USAGE, self.origin)
        if any(isinstance(n, S.BatchNorm) and n.unbiased_running_var for _, n in self.plan.spec.walk()):
            text += ("\n- In training, Gluon's BatchNorm updates running_var with the biased batch variance "
                     "(MXNet 1.9.1 updates the running statistics when backward runs); the spec (PyTorch's "
                     "rule) uses the unbiased one: the running statistics of a training run differ "
                     "(inference does not).")
        return text

    def generate(self) -> str:
        body = Source()
        writers = [self.WRITER(self, cls) for cls in self.plan.classes]
        for writer in writers[:-1]:
            writer.write(body)
        self.stage_table(body)
        writers[-1].write(body)
        root = self.plan.root
        body.add("def build(**options):")
        body.docstring(f"The {root.name} model, initialised and hybridized; options: "
                       f"{', '.join(root.params) or 'none'}.", 4)
        body.add(f"model = {root.name}(**options)", 4)
        body.add("model.initialize()", 4)
        body.add("model.hybridize()", 4)
        body.add("return model", 4)
        body.blank(2)
        text = body.text()
        sections = gluon_helpers.sections()
        wanted = set(self.need) | {n for n in gluon_helpers.ORDER if re.search(rf"\b{n}\(", text)}
        wanted |= {r for n in list(wanted) for r in gluon_helpers.REQUIRES.get(n, ())}
        src = Source()
        src.docstring(self.module_doc(), 0)
        src.blank()
        src.add("\n".join(["import json", "", "import mxnet as mx", "import numpy as np",
                           "from mxnet import gluon", "from mxnet.gluon import nn"]))
        src.blank(2)
        for name in gluon_helpers.ORDER:
            if name in wanted:
                src.add(sections[name])
                src.blank(2)
        src.out += body.out
        src.blank(2)
        src.add(sections["load_canonical"])
        return src.text()


def generate(plan: Plan, origin: str) -> str:
    return GluonEmitter(plan, origin).generate()
