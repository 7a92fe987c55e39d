"""The structural difference of two specs, summarised, before any forward pass.

Every aligned pair of leaves is compared field by field, every leaf present on one
side only and every reordered concat is a difference; repeated differences (the
same field with the same values on many layers) become one line with a count:
"all 20 convs of the port have a bias the reference lacks", "all 49 BatchNorms:
eps 0.001 vs 1.001e-05". Each difference says whether the reference's weights can
still be copied onto the port (eps, padding, an activation: yes, and the run goes
on to show what it does; a kernel size, a missing conv: no). Imports no framework.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from refnets import rules
from refnets import spec as S

from .align import Alignment, Placed, align, normalised

NOUNS = {"conv": "conv", "dense": "dense layer", "batchnorm": "BatchNorm", "activation": "activation",
         "pool": "pool", "pad": "zero pad", "reshape": "flatten", "shared": "shared layer"}
# Fields whose difference leaves the weights' shapes alone: the reference's weights still fit the port.
COPYABLE_FIELDS = {"stride", "padding", "dilation", "eps", "momentum", "unbiased_running_var", "kind", "ceil_mode",
                   "count_include_pad", "rate", "keepdims"}
GLOBAL_POOLS = (S.GlobalAvgPool, S.AdaptiveAvgPool)
# Fields that matter in training only: reported, but the inference verdict does not rest on them.
TRAINING_ONLY = {"momentum", "unbiased_running_var", "rate"}


@dataclass(frozen=True)
class Difference:
    key: str  # what groups repeated differences: the same key and detail are one summary line
    where: str  # the reference path (or the port's, for a node only it has)
    detail: str
    copyable: bool
    kind: str = ""
    training_only: bool = False
    alone: str = ""  # the line when it is the only one of its group ("" : "<where>: <detail>")


@dataclass
class StructuralDiff:
    differences: List[Difference] = field(default_factory=list)
    alignment: Alignment = field(default_factory=Alignment)
    totals: Dict[str, int] = field(default_factory=dict)  # kind -> how many the reference has

    @property
    def identical(self) -> bool:
        return not self.differences

    @property
    def affects_inference(self) -> bool:
        return any(not d.training_only for d in self.differences)

    @property
    def copyable(self) -> bool:
        """Whether the reference's weights can be copied onto the port anyway."""
        return all(d.copyable for d in self.differences)

    def summary(self) -> List[str]:
        groups: "OrderedDict[tuple, List[Difference]]" = OrderedDict()
        for difference in self.differences:
            groups.setdefault((difference.key, difference.detail), []).append(difference)
        lines = []
        for (_, detail), members in groups.items():
            if len(members) == 1:
                lines.append(members[0].alone or f"{members[0].where or '<input>'}: {detail}")
                continue
            noun = NOUNS.get(members[0].kind, members[0].kind)
            total = self.totals.get(members[0].kind, 0)
            scope = f"all {len(members)} {noun}s" if len(members) == total else f"{len(members)} {noun}s"
            lines.append(f"{scope}: {detail}")
        return lines


def _value(v) -> str:
    if isinstance(v, tuple) and len(v) == 2 and v[0] == v[1]:
        return f"{v[0]}x{v[1]}" if isinstance(v[0], int) else str(v)
    return repr(v) if isinstance(v, str) else str(v)


def _fields(a: Placed, b: Placed) -> List[Difference]:
    kind = rules.kind(a.node)
    found = []
    for f in dataclasses.fields(a.node):
        if f.name == "name":
            continue
        ref_value, port_value = getattr(a.node, f.name), getattr(b.node, f.name)
        if ref_value == port_value:
            continue
        if f.name == "bias":
            detail = "the port has a bias the reference lacks" if port_value else "the port lacks the reference's bias"
            found.append(Difference(f"{kind}:bias:{port_value}", a.path, detail, bool(port_value), kind))
            continue
        noun = "kernel" if f.name == "kernel" else f.name.replace("_", " ")
        detail = f"{noun} {_value(ref_value)} vs {_value(port_value)}"
        training = f.name in TRAINING_ONLY
        detail += " (training only)" if training else ""
        found.append(Difference(f"{kind}:{f.name}", a.path, detail, f.name in COPYABLE_FIELDS, kind, training))
    return found


def _pair(a: Placed, b: Placed, input_shape) -> List[Difference]:
    if type(a.node) is type(b.node):
        return _fields(a, b)
    kind = rules.kind(a.node)
    copyable = not (rules.has_params(a.node) or rules.has_params(b.node))
    if isinstance(a.node, GLOBAL_POOLS) != isinstance(b.node, GLOBAL_POOLS) and kind == rules.kind(b.node) == "pool":
        side = "reference" if isinstance(a.node, GLOBAL_POOLS) else "port"
        other = "port" if side == "reference" else "reference"
        size = "x".join(str(v) for v in input_shape[1:])
        fixed = type(b.node if side == "reference" else a.node).__name__
        detail = f"the {side} has an adaptive pool where the {other} has a fixed {fixed}: they agree only at input {size}"
        return [Difference("pool:adaptive", a.path, detail, copyable, kind)]
    detail = f"{type(a.node).__name__} in the reference, {type(b.node).__name__} in the port"
    return [Difference(f"type:{type(a.node).__name__}:{type(b.node).__name__}", a.path, detail, copyable, kind)]


def _one_side(placed: Placed, before: Optional[Placed], side: str) -> Difference:
    kind = rules.kind(placed.node)
    what = placed.node.kind if isinstance(placed.node, S.Activation) else NOUNS.get(kind, kind)
    if isinstance(placed.node, S.Activation) and placed.node.kind == "relu":
        what = "ReLU"
    after = f" after {before.path}" if before is not None else " at the start"
    if side == "ref":
        detail, alone = f"no {what} in the port where the reference has one", f"no {what}{after} in the port"
    else:
        detail, alone = f"an extra {what} in the port", f"an extra {what}{after} in the port"
    return Difference(f"{side}-only:{what}", placed.path, detail, not rules.has_params(placed.node), kind,
                      alone=alone)


def _pad_then_pool(differences: List[Difference]) -> List[Difference]:
    """A zero pad on one side only beside a max pool whose padding differs: one line
    saying that one pads with -inf (the pool's own padding never wins a max) where
    the other zero-pads (a zero can win over negative inputs)."""
    pads = [d for d in differences if d.key in ("port-only:zero pad", "ref-only:zero pad")]
    pools = [d for d in differences if d.key == "pool:padding"]
    merged = []
    for pad, pool in zip(pads, pools):
        side, other = ("reference", "port") if pad.key.startswith("port") else ("port", "reference")
        merged.append(Difference("maxpool-pad", pool.where, f"the {side}'s max pool pads with -inf where the {other} "
                                 f"zero-pads before it", True, "pool"))
    used = {id(d) for pair in zip(pads, pools) for d in pair}
    return [d for d in differences if id(d) not in used] + merged


def structural_diff(reference: S.ModelSpec, port: S.ModelSpec) -> StructuralDiff:
    """What differs between the reference spec and the port's, summarised."""
    reference, port = normalised(reference), normalised(port)
    alignment = align(reference.root, port.root)
    result = StructuralDiff(alignment=alignment)
    result.totals = dict(Counter(rules.kind(n) for _, n in reference.walk() if not isinstance(n, S.CONTAINERS)))
    for a, b in alignment.pairs:
        result.differences += _pair(a, b, reference.input_shape)
    for placed, before in alignment.only_ref:
        result.differences.append(_one_side(placed, before, "ref"))
    for placed, before in alignment.only_port:
        result.differences.append(_one_side(placed, before, "port"))
    for path, order in alignment.reordered:
        result.differences.append(Difference("concat-order", path, f"concat order of the branches differs (the port's "
                                             f"order is {', '.join(str(i) for i in order)})", True, "parallel"))
    result.differences = _pad_then_pool(result.differences)
    for a, b in alignment.mismatched:
        result.differences.append(Difference("mismatch", a.path, f"the structures differ: {_short(a.node)} in the "
                                             f"reference, {_short(b.node)} in the port", False, "structure"))
    return result


def _short(node: S.Node) -> str:
    from .align import signature

    text = signature(node)
    return text if len(text) <= 60 else text[:57] + "..."
