"""Spec -> `plan.Plan`: the classes, their arguments and expressions, the stage
tables and a docstring line per class (see `plan` for the rules).

This module imports no framework.
"""

from __future__ import annotations

import re
from typing import Dict, List

from .. import shapes
from .. import spec as S
from . import leaves
from .writer import literal
from .plan import ClassPlan, Plan, Stage, fit, param_name, preorder, decide_classes, stage_pattern

KNOWN_NAMES = {"resnet": "ResNet", "densenet": "DenseNet", "googlenet": "GoogLeNet", "vgg": "VGG",
               "alexnet": "AlexNet", "lenet": "LeNet", "nin": "NiN", "mnist": "Mnist"}
LEAF_WORDS = {S.Conv2d: "Conv", S.BatchNorm: "BN", S.MaxPool: "MaxPool", S.AvgPool: "AvgPool", S.Dense: "Linear",
              S.ZeroPad: "Pad", S.Dropout: "Dropout", S.Flatten: "Flatten", S.GlobalAvgPool: "GlobalPool"}


def camel(text: str) -> str:
    words = [w for w in re.split(r"[^0-9a-zA-Z]+", text) if w]
    out = []
    for word in words:
        lead = re.match(r"[a-z]+", word.lower())
        known = KNOWN_NAMES.get(lead.group(0)) if lead else None
        word = known + word[len(known):] if known else word[:1].upper() + word[1:]
        out.append(re.sub(r"v(\d+)$", r"V\1", word))
    name = "".join(out) or "Model"
    return name if not name[0].isdigit() else "Net" + name


def summary(node: S.Node, path: str, class_at, depth: int = 0) -> str:
    """Compact description of a template: "bn, relu, add(conv 1x1, ... | identity)"."""
    if depth and path in class_at:
        return class_at[path].name
    if isinstance(node, S.Sequential):
        return ", ".join(summary(c, S.join(path, S.child_segment(c, i)), class_at, depth + 1)
                         for i, c in enumerate(node.children))
    if isinstance(node, S.Parallel):
        parts = [summary(c, S.join(path, S.child_segment(c, i)), class_at, depth + 1)
                 for i, c in enumerate(node.branches)]
        return f"{node.merge}({' | '.join(parts)})"
    return leaves.label(node)


def _shortcut_word(node: S.Node) -> str:
    for _, sub in preorder(node):
        if isinstance(sub, S.Parallel) and sub.merge == "add":
            rest = [n for b in sub.branches[1:] for _, n in preorder(b)]
            if any(isinstance(n, S.Conv2d) for n in rest):
                return "Projection"
            if any(isinstance(n, (S.MaxPool, S.AvgPool)) for n in rest):
                return "PoolShortcut"
    return ""


def class_name(members: List[str], node: S.Node, taken: set) -> str:
    bases = {re.sub(r"(\d+[a-z]?)?$", "", m.rsplit(".", 1)[-1]).strip("_") for m in members}
    base = camel(bases.pop()) if len(bases) == 1 and "" not in bases else ""
    kids = [n for _, n in preorder(node) if not isinstance(n, S.CONTAINERS)]
    if not base:
        convs = sum(isinstance(n, S.Conv2d) for n in kids)
        residual = any(isinstance(n, S.Parallel) and n.merge == "add" for _, n in preorder(node))
        if residual:
            base = {2: "BasicBlock", 3: "Bottleneck"}.get(convs, "ResidualBlock")
        elif len(kids) <= 4 and isinstance(node, S.Sequential):
            base = "".join(LEAF_WORDS.get(type(n), getattr(n, "kind", "").capitalize()
                                          .replace("Relu", "ReLU")) for n in kids) or "Block"
        else:
            base = "Branches" if isinstance(node, S.Parallel) else "Block"
    for candidate in (base, _shortcut_word(node) + base):
        if candidate not in taken:
            return candidate
    index = 2
    while f"{base}{index}" in taken:
        index += 1
    return f"{base}{index}"


class Analyser:
    def __init__(self, spec: S.ModelSpec, inline_shared_targets: bool = False):
        self.spec = spec
        self.infos = shapes.infer(spec)
        self.nodes = dict(preorder(spec.root))
        self.sources = S.input_sources(spec.root)
        self.sigs, self.groups, chosen, self.stages = decide_classes(spec, self.infos, inline_shared_targets)
        self.class_at: Dict[str, ClassPlan] = {}
        self.classes: List[ClassPlan] = []
        self.taken = set()
        self.pending = {}
        for path in sorted(chosen, key=lambda p: -p.count(".") if p else 1):
            if path not in self.pending and path not in self.class_at:
                members = self.groups[self.sigs[path]] if path else [""]
                cls = ClassPlan(name="", members=members, node=self.nodes[members[0]], path=members[0])
                for m in members:
                    self.pending[m] = cls
        self.finish(self.pending[""])

    def finish(self, cls: ClassPlan) -> ClassPlan:
        """Fill in `cls` (its children's classes first)."""
        if cls in self.classes:
            return cls
        for m in cls.members:
            self.class_at[m] = cls
        for path, _ in preorder(cls.node, cls.path):
            if path != cls.path and path in self.pending:
                self.finish(self.pending[path])
        is_root = cls.path == ""
        cls.name = camel(self.spec.name) if is_root else class_name(cls.members, cls.node, self.taken)
        self.taken.add(cls.name)
        cls.values["in_channels"] = [self.infos[m].in_shape[0] for m in cls.members]
        self.walk(cls, cls.node, cls.path)
        if is_root:
            self.num_classes(cls)
        outs = [self.infos[m].out_shape[0] for m in cls.members]
        cls.out_expr = fit(outs, cls.params, cls.values) or (literal(outs[0]) if len(set(outs)) == 1 else None)
        cls.doc = summary(cls.node, cls.path, self.class_at)
        self.classes.append(cls)
        return cls

    def slot(self, cls: ClassPlan, path: str, fld: str, values: list) -> None:
        rel = path[len(cls.path) + 1:] if cls.path else path
        if rel == "":
            rel = "."
        fed = self.sources[path] == self.sources[cls.path] and fld in leaves.INPUT_FIELDS + ("in_channels",)
        if fed:
            expr = "in_channels"
        elif len(set(map(repr, values))) == 1:
            expr = literal(values[0])
        else:
            expr = fit(values, cls.params, cls.values)
            if expr is None:
                expr = param_name(rel, fld, cls.params)
                cls.params.append(expr)
                cls.values[expr] = list(values)
        cls.exprs[(rel, fld)] = expr

    def member_paths(self, cls: ClassPlan, path: str) -> List[str]:
        tail = path[len(cls.path):] if cls.path else ("." + path if path else "")
        return [(m + tail).lstrip(".") if m else tail.lstrip(".") for m in cls.members]

    def walk(self, cls: ClassPlan, node: S.Node, path: str) -> None:
        if path != cls.path and path in self.class_at:
            child = self.class_at[path]
            for index, p in enumerate(child.params):
                values = [child.args_of(m)[index] for m in self.member_paths(cls, path)]
                self.slot(cls, path, p, values)
            return
        if path in self.stages and len(cls.members) == 1 and self.table(cls, node, path):
            return
        if isinstance(node, S.CONTAINERS):
            for index, child in enumerate(S.children_of(node)):
                self.walk(cls, child, S.join(path, S.child_segment(child, index)))
            return
        _, fields = leaves.describe(node, self.infos[path])
        for fld in fields:
            values = [leaves.describe(self.nodes[m], self.infos[m])[1][fld] for m in self.member_paths(cls, path)]
            self.slot(cls, path, fld, values)

    def table(self, cls: ClassPlan, node: S.Sequential, path: str) -> bool:
        """Record the stage at `path` as a table; False when a block has no known
        output channel count (then its blocks are written one by one)."""
        kids = [S.join(path, S.child_segment(c, i)) for i, c in enumerate(node.children)]
        kinds = [self.class_at[k] for k in kids]
        if any(k.out_expr is None for k in kinds):
            return False
        rows = []
        for kid, kind in zip(kids, kinds):
            args = kind.args_of(kid)[1:]
            if rows and rows[-1][0] == kind.name and rows[-1][2] == args:
                rows[-1] = (kind.name, rows[-1][1] + 1, args)
            else:
                rows.append((kind.name, 1, args))
        prefix, start = stage_pattern(node)
        rel = path[len(cls.path) + 1:] if cls.path else path
        cls.stages[rel] = Stage(prefix, start, rows)
        self.slot(cls, path, "in_channels", [self.infos[path].in_shape[0]])
        return True

    def num_classes(self, cls: ClassPlan) -> None:
        """The root's classifier width as the argument `num_classes` (the zoo option)."""
        wanted = dict(self.spec.options).get("num_classes")
        hits = [key for key, expr in cls.exprs.items() if key[1] == "out_features" and expr == literal(wanted)]
        if wanted is None or not hits:
            return
        for key in hits:
            cls.exprs[key] = "num_classes"
        cls.params.append("num_classes")
        cls.values["num_classes"] = [wanted]


def make_plan(spec: S.ModelSpec, inline_shared_targets: bool = False) -> Plan:
    """The plan of `spec`'s source; `inline_shared_targets`: see `plan.decide_classes`."""
    analyser = Analyser(spec, inline_shared_targets)
    root = analyser.class_at[""]
    defaults = {p: root.values[p][0] for p in root.params}
    return Plan(spec=spec, infos=analyser.infos, nodes=analyser.nodes, classes=analyser.classes,
                class_at=analyser.class_at, defaults=defaults)
