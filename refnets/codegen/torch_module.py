"""A whole generated PyTorch module: docstring, imports, the helpers it needs,
one class per block kind, the stage tables, the model class, `build` and
`load_canonical`.

This module imports no framework.
"""

from __future__ import annotations

from . import notes, torch_helpers
from .emit_torch import ClassWriter
from .plan import ClassPlan, Plan
from .writer import Call, Source, brackets, string

PHRASES = {
    "key": "torch",
    "momentum": "(PyTorch's convention: the weight of the new batch statistic)",
    "biased": "BiasedVarBatchNorm updates running_var with the biased batch variance in training "
              "(Keras's and MXNet's rule; inference is PyTorch's)",
    "affine": "affine=False: no learned scale and shift",
    "conv_sym": "symmetric padding is the conv's own zero padding",
    "conv_asym": "padding that differs per side is an explicit zero pad before an unpadded conv "
                 "(PaddedConv2d)",
    "conv_same": "'same' is TensorFlow's rule, worked out for each input size: ceil(size / stride) "
                 "outputs, the total padding split with the smaller half on top / left (SameConv2d)",
    "zeropad": "A ZeroPad layer (nn.ZeroPad2d) pads with zeros, which can win a max pool; a pool's own "
               "padding is -inf for a max pool and never wins.",
    "pool": "Pools: nn.MaxPool2d / nn.AvgPool2d with their own padding where they can take it "
            "(symmetric, at most half the kernel), else PaddedPool2d.",
    "ceil": "ceil_mode=True follows PyTorch: the output size is rounded up, but a window that would "
            "start in the bottom / right padding is dropped.",
    "divisor": "Average pools divide by PyTorch's rule: with count_include_pad the padding is counted "
               "(not the ceil-mode overhang), without it only input cells.",
    "flatten": "Flatten is torch.flatten(x, 1) on N, C, H, W: features in C, H, W order, the "
               "canonical dense layout.",
    "gap": "Global average pooling is the mean over height and width.",
    "adaptive": "Adaptive average pooling is nn.AdaptiveAvgPool2d, PyTorch's windows: output cell i of n "
                "over a size-L axis averages "
                "cells floor(i * L / n) to ceil((i + 1) * L / n) - 1.",
    "softmax": "Softmax is over the channel axis (dim=1).",
    "shared": "A layer applied twice is one module called twice: its weights appear once, under its "
              "first name.",
}

USAGE = """Use:

    model = build()  # or build(num_classes=...) where the model takes options
    load_canonical(model, "weights.safetensors")
    logits = model(images)  # N, C, H, W"""


class TorchEmitter:
    def __init__(self, plan: Plan, origin: str):
        self.plan, self.origin = plan, origin
        self.need = set()

    def class_doc(self, cls: ClassPlan) -> str:
        if cls.path == "":
            kinds = len(self.plan.classes) - 1
            return f"{self.plan.spec.name}" + (f": its {kinds} block kinds are above." if kinds else ".")
        args = ", ".join(cls.params)
        return f"{cls.doc} ({len(cls.members)} in the model; arguments: {args})."

    def stage_table(self, src: Source) -> None:
        stages = self.plan.root.stages
        if not stages:
            return
        src.add("# Stage plan: per stage, rows of (block class, number of blocks, arguments after")
        src.add("# in_channels); make_stage chains the blocks' channel counts.")
        items = []
        for rel, stage in stages.items():
            rows = [f"({', '.join([name, str(count)] + [_lit(a) for a in args])})" for name, count, args in
                    stage.rows]
            items.append(Call(f"{string(rel)}: ", rows, "[", "]", explode=True))
        src.stmt("STAGES = ", brackets("{", items, "}", explode=True), 0)
        src.blank(2)

    def generate(self) -> str:
        writers = [ClassWriter(self, cls) for cls in self.plan.classes]
        body = Source()
        for writer in writers[:-1]:
            writer.write(body)
        self.stage_table(body)
        writers[-1].write(body)
        root = self.plan.root
        body.add("def build(**options):")
        body.docstring(f"The {root.name} model (eval mode); options: "
                       f"{', '.join(p for p in root.params) or 'none'}.", 4)
        body.add(f"return {root.name}(**options).eval()", 4)
        body.blank(2)
        self.need.add("load_canonical")
        src = Source()
        src.docstring(notes.module_doc(self.plan, "PyTorch", PHRASES, USAGE, self.origin), 0)
        src.blank()
        src.add("\n".join(self.imports(body.text())))
        src.blank(2)
        sections = torch_helpers.sections()
        order = ["same_padding", "SameConv2d", "PaddedConv2d", "PaddedPool2d", "GlobalAvgPool",
                 "BiasedVarBatchNorm", "make_stage"]
        wanted = set(self.need) | {r for n in self.need for r in torch_helpers.REQUIRES.get(n, ())}
        for name in order:
            if name in wanted:
                src.add(sections[name])
                src.blank(2)
        src.out += body.out
        src.blank(2)
        src.add(sections["load_canonical"])
        return src.text()

    def imports(self, text: str):
        out = ["import json", "", "import torch"]
        sections = torch_helpers.sections()
        helpers_text = "".join(sections[n] for n in self.need if n in sections)
        if "F." in text or "F." in helpers_text or "PaddedPool2d" in self.need or "SameConv2d" in self.need:
            out.append("import torch.nn.functional as F")
        out.append("from torch import nn")
        return out


def _lit(value) -> str:
    from .writer import literal

    return literal(value)


def generate(plan: Plan, origin: str) -> str:
    return TorchEmitter(plan, origin).generate()

