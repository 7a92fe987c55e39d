"""A whole generated Keras module: docstring, imports, the helpers it needs, one
builder function per block kind, the stage tables, the model function, `build`
and `load_canonical`.

Channels-last as Keras wants; a free spatial input size (None, None) unless a
layer needs to know it (a Flatten of a map before a Dense, an adaptive pool, a
ceil-mode pool or one whose 'same' padding is counted). A Flatten runs on the
channels-last map, as keras.applications' VGG does; `FLATTENED` tells
load_canonical which Dense layers' canonical (C, H, W) columns to reorder.

This module imports no framework.
"""

from __future__ import annotations

import re
from typing import Dict, Iterator, Set, Tuple

from .. import spec as S
from . import keras_helpers, notes
from .emit_keras import FunctionWriter, keras_params, snake
from .leaves import pool_mode
from .plan import ClassPlan, Plan
from .structure import Template, kids
from .writer import Call, Source, brackets, literal, string

PHRASES = {
    "key": "keras",
    "momentum": "(PyTorch's convention: the weight of the new batch statistic; Keras's momentum, the "
                "weight of the old one, is 1 minus it)",
    "biased": "the moving variance is updated with the biased batch variance in training (Keras's own "
              "rule)",
    "affine": "center=False, scale=False: no learned scale and shift",
    "conv_sym": "symmetric padding is padding=\"same\" where that is the same at every input size (stride "
                "1, dilation * (kernel - 1) even), else a ZeroPadding2D before an unpadded conv",
    "conv_asym": "padding that differs per side is a ZeroPadding2D before an unpadded conv",
    "conv_same": "'same' is Keras's own padding=\"same\" (TensorFlow's rule: ceil(size / stride) outputs, "
                 "the smaller half of the padding on top / left)",
    "zeropad": "A ZeroPad layer (ZeroPadding2D) pads with zeros, which can win a max pool; a pool's own "
               "padding is -inf for a max pool and never wins (PaddedPooling2D).",
    "pool": "Pools: MaxPooling2D / AveragePooling2D where Keras's rule is the spec's ('valid', or 'same' "
            "when the padding is not counted), else PaddedPooling2D.",
    "ceil": "ceil_mode follows PyTorch: the output size is rounded up, but a window that would start in "
            "the bottom / right padding is dropped.",
    "divisor": "Average pools divide by PyTorch's rule: with count_include_pad the padding is counted "
               "(not the ceil-mode overhang), without it only input cells.",
    "flatten": "Flatten runs on the channels-last map, so its features are in H, W, C order; canonical "
               "dense weights are in C, H, W order, and load_canonical reorders the columns of each Dense "
               "a Flatten feeds (FLATTENED). Where a Flatten feeds anything else, a Permute to "
               "channels-first comes first.",
    "gap": "Global average pooling is the mean over height and width (GlobalAveragePooling2D).",
    "adaptive": "Adaptive average pooling (AdaptiveAveragePooling2D, defined here; Keras has none) takes "
                "PyTorch's windows: output cell i of n over a size-L axis averages "
                "cells floor(i * L / n) to ceil((i + 1) * L / n) - 1.",
    "softmax": "Softmax is over the channel axis (the last one, channels-last).",
    "shared": "A layer applied twice is one layer object called twice: its weights appear once, under its "
              "first name.",
}

USAGE = """Use:

    model = build()  # or build(num_classes=...) where the model takes options
    load_canonical(model, "weights.safetensors")
    logits = model(images)  # N, H, W, C (channels-last)"""

RESERVED = {"layers", "keras", "ops", "np", "json", "stack", "pair", "build", "load_canonical", "inputs", "name",
            "x", "STAGES", "FLATTENED", "ROLES"}
PASS_THROUGH = (S.Dropout, S.Activation, S.Identity)
HELPER_ORDER = ["pair", "same_padding", "PaddedPooling2D", "AdaptiveAveragePooling2D", "StridedDilatedConv2D",
                "stack"]


def template_nodes(plan: Plan, cls: ClassPlan) -> Iterator[Tuple[str, S.Node]]:
    """(path, node) of a class's template, not inside other classes' instances or stages."""
    t = Template(plan, cls)

    def visit(node, path):
        yield path, node
        if path != cls.path and t.opaque(path):
            return
        for _, sub_path, sub in kids(node, path):
            yield from visit(sub, sub_path)

    yield from visit(cls.node, cls.path)


def flatten_plan(plan: Plan) -> Tuple[Dict[str, tuple], Set[str]]:
    """(Dense path -> (h, w, c) of the map a channels-last Flatten before it
    flattened, Flatten paths that must permute to channels-first first)."""
    shared = {n.target for _, n in plan.spec.walk() if isinstance(n, S.Shared)}
    dense, chw = {}, set()
    for path, node in plan.spec.walk():
        if not isinstance(node, S.Sequential):
            continue
        children = list(kids(node, path))
        for index, (_, sub_path, sub) in enumerate(children):
            shape = plan.infos[sub_path].in_shape
            if not isinstance(sub, S.Flatten) or len(shape) != 3 or shape[1] * shape[2] == 1:
                continue
            after = [(p, n) for _, p, n in children[index + 1:]]
            while after and isinstance(after[0][1], PASS_THROUGH) and not (
                    isinstance(after[0][1], S.Activation) and after[0][1].kind == "softmax"):
                after = after[1:]
            if after and isinstance(after[0][1], S.Dense) and after[0][0] not in shared:
                dense[after[0][0]] = (shape[1], shape[2], shape[0])
            else:
                chw.add(sub_path)
    return dense, chw


def fixed_size_reason(plan: Plan) -> str:
    """Why the model needs its input's height and width ("" when it does not)."""
    for path, node in plan.spec.walk():
        if isinstance(node, S.Flatten) and len(plan.infos[path].in_shape) == 3:
            return f"{path!r} flattens a feature map"
        if isinstance(node, S.AdaptiveAvgPool):
            return f"{path} is an adaptive pool"
        if isinstance(node, (S.MaxPool, S.AvgPool)) and node.ceil_mode:
            return f"{path} is a ceil-mode pool"
        if isinstance(node, S.AvgPool) and pool_mode(node) == "same" and node.count_include_pad:
            return f"{path} counts its 'same' padding"
    return ""


class KerasEmitter:
    def __init__(self, plan: Plan, origin: str):
        self.plan, self.origin = plan, origin
        self.need = {"stack"} if plan.root.stages else set()
        self.kparams, self.needs_in = keras_params(plan)
        self.fname = {}
        for cls in plan.classes:
            name = cls.name if cls.path == "" else snake(cls.name)
            while name in RESERVED or name in self.fname.values():
                name += "_block"
            self.fname[cls.name] = name
        self.reserved = RESERVED | set(self.fname.values())
        self.shared_targets = {cls.name: {Template(plan, cls).rel(n.target) for _, n in template_nodes(plan, cls)
                                          if isinstance(n, S.Shared)} for cls in plan.classes}
        self.flattened, self.chw_flattens = flatten_plan(plan)
        self.fixed = fixed_size_reason(plan)
        _, h, w = plan.spec.input_shape
        self.input_size = (h, w) if self.fixed else (None, None)

    def input_shape_expr(self) -> str:
        return "(*input_size, in_channels)" if "in_channels" in self.plan.root.params else \
            f"(*input_size, {self.plan.spec.input_shape[0]})"

    def rename(self, text: str) -> str:
        """Class names in analysis text -> this module's function names."""
        names = {k: v for k, v in self.fname.items() if k != self.plan.root.name}
        if not names:
            return text
        return re.sub(r"\b(" + "|".join(map(re.escape, names)) + r")\b", lambda m: names[m.group(1)], text)

    def function_doc(self, cls: ClassPlan) -> str:
        if cls.path == "":
            kinds = len(self.plan.classes) - 1
            size = ("Input (None, None, channels): any height and width the layers accept" if not self.fixed
                    else f"Input {self.input_size[0]}x{self.input_size[1]} by default: {self.fixed}, so "
                         f"the size is fixed")
            return (f"{self.plan.spec.name} as a keras.Model" + (f", built from the {kinds} block functions "
                                                                  f"above" if kinds else "") + f". {size}.")
        args = ", ".join(["x"] + self.kparams[cls.name] + ["name"])
        return self.rename(f"{cls.doc} ({len(cls.members)} in the model; arguments: {args}).")

    def stage_table(self, src: Source) -> None:
        stages = self.plan.root.stages
        if not stages:
            return
        src.add("# Stage plan: per stage, rows of (block function, number of blocks, arguments);")
        src.add("# stack builds them in a row.")
        by_name = {c.name: c for c in self.plan.classes}
        items = []
        for rel, stage in stages.items():
            rows = []
            for name, count, args in stage.rows:
                cls = by_name[name]
                kept = tuple(a for p, a in zip(cls.params[1:], args) if p in self.kparams[name])
                if rows and rows[-1][0] == name and rows[-1][2] == kept:
                    rows[-1] = (name, rows[-1][1] + 1, kept)
                else:
                    rows.append((name, count, kept))
            text = [f"({', '.join([self.fname[n], str(c)] + [literal(a) for a in kept])})" for n, c, kept in rows]
            items.append(Call(f"{string(rel)}: ", text, "[", "]", explode=True))
        src.stmt("STAGES = ", brackets("{", items, "}", explode=True), 0)
        src.blank(2)

    def extra_facts(self) -> list:
        out = []
        bns = [n for _, n in self.plan.spec.walk() if isinstance(n, S.BatchNorm)]
        if any(n.unbiased_running_var for n in bns):
            out.append("In training, Keras's BatchNormalization updates moving_variance with the biased batch "
                       "variance; the spec (PyTorch's rule) uses the unbiased one: the running statistics of a "
                       "training run differ (inference does not).")
        size = "any height and width (None, None)" if not self.fixed else f"fixed ({self.fixed})"
        out.append(f"Channels-last: input (N, H, W, C), {size}.")
        return out

    def module_doc(self) -> str:
        text = notes.module_doc(self.plan, "Keras", PHRASES, USAGE, self.origin)
        return self.rename(text + "".join(f"\n- {b}" for b in self.extra_facts()))

    def generate(self) -> str:
        body = Source()
        for cls in self.plan.classes[:-1]:
            FunctionWriter(self, cls).write(body)
        self.stage_table(body)
        FunctionWriter(self, self.plan.root).write(body)
        root = self.plan.root
        options = ", ".join(list(root.params) + ["input_size"])
        body.add("def build(**options):")
        body.docstring(f"The {root.name} keras.Model; options: {options}.", 4)
        body.add(f"return {self.fname[root.name]}(**options)", 4)
        body.blank(2)
        src = Source()
        src.docstring(self.module_doc(), 0)
        src.blank()
        sections = keras_helpers.sections()
        wanted = set(self.need) | {r for n in self.need for r in keras_helpers.REQUIRES.get(n, ())}
        helpers = [sections[name] for name in HELPER_ORDER if name in wanted]
        uses_ops = any("ops." in h for h in helpers)
        src.add("\n".join(["import json", "", "import keras", "import numpy as np",
                           "from keras import layers, ops" if uses_ops else "from keras import layers"]))
        src.blank(2)
        for text in helpers:
            src.add(text)
            src.blank(2)
        src.out += body.out
        src.blank(2)
        src.add("# Dense layers fed by a channels-last Flatten of an (h, w, c) map: load_canonical")
        src.add("# reorders their canonical (c, h, w) columns.")
        src.stmt("FLATTENED = ", brackets("{", [f"{string(k)}: {literal(v)}" for k, v in self.flattened.items()],
                                          "}"), 0)
        src.blank(2)
        src.add(sections["load_canonical"])
        return src.text()


def generate(plan: Plan, origin: str) -> str:
    return KerasEmitter(plan, origin).generate()


__all__ = ["KerasEmitter", "generate"]
