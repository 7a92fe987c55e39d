"""The framework-neutral plan of a generated module: which containers of the spec
become classes, their constructor arguments, and the stage tables.

- Every container gets a structural signature: node types, child names and the
  structural choices of its leaves (`leaves.describe`), but not the numbers that
  may differ (channels, strides, kernels, eps ...). Containers with the same
  signature are instances of one class.
- A group is not a class of its own when it sits at the same place inside every
  instance of an enclosing group of the same size (the body of a residual block is
  part of the block's class).
- A class's numbers that differ between its instances become constructor
  arguments; one equal to (a multiple of, a fraction of, or an offset from) an
  argument already there is written as that expression. The class's input channel
  count is always the first argument, `in_channels`.
- A Sequential whose children are all instances of classes, named `prefix1,
  prefix2, ...`, is a stage: a row of a stage table (class, how many, arguments)
  per run of equal blocks, built by a loop in which each block takes the previous
  block's `out_channels`.

This module imports no framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .. import shapes
from .. import spec as S
from . import leaves

FIELD_NAMES = {"out_channels": "channels", "out_features": "features"}


@dataclass
class Stage:
    """A Sequential of blocks: rows (class name, count, arguments after in_channels),
    children named f"{prefix}{start + i}"."""

    prefix: str
    start: int
    rows: List[Tuple[str, int, tuple]]


@dataclass
class ClassPlan:
    name: str
    members: List[str]
    node: S.Node  # the first member's node (the template)
    path: str  # the first member's path
    params: List[str] = field(default_factory=lambda: ["in_channels"])
    values: Dict[str, list] = field(default_factory=dict)  # param -> value per member
    exprs: Dict[Tuple[str, str], str] = field(default_factory=dict)  # (rel, field) -> expression
    out_expr: Optional[str] = None
    stages: Dict[str, Stage] = field(default_factory=dict)  # rel -> stage (single-instance classes)
    doc: str = ""

    def args_of(self, path: str) -> tuple:
        index = self.members.index(path)
        return tuple(self.values[p][index] for p in self.params)


@dataclass
class Plan:
    spec: S.ModelSpec
    infos: Dict[str, shapes.NodeInfo]
    nodes: Dict[str, S.Node]
    classes: List[ClassPlan]  # children before parents; the root's class last
    class_at: Dict[str, ClassPlan]  # every member path -> its class
    defaults: Dict[str, object]  # the root class's arguments and their defaults

    @property
    def root(self) -> ClassPlan:
        return self.classes[-1]


def rel(path: str, base: str) -> str:
    return path if not base else path[len(base) + 1:] if path != base else ""


def parent(path: str, levels: int = 1) -> Optional[str]:
    parts = path.split(".") if path else []
    return None if levels > len(parts) else ".".join(parts[: len(parts) - levels])


def preorder(node: S.Node, path: str = ""):
    yield path, node
    for index, child in enumerate(S.children_of(node)):
        yield from preorder(child, S.join(path, S.child_segment(child, index)))


def signature(node: S.Node, path: str, base: str, infos) -> tuple:
    """Structure of the subtree at `path`, with Shared targets relative to `base`."""
    if isinstance(node, S.CONTAINERS):
        kids = tuple((S.child_segment(c, i), signature(c, S.join(path, S.child_segment(c, i)), base, infos))
                     for i, c in enumerate(S.children_of(node)))
        return (type(node).__name__, getattr(node, "merge", None), kids)
    structure, _ = leaves.describe(node, infos[path])
    if isinstance(node, S.Shared):
        inside = base == "" or node.target.startswith(base + ".")
        return structure + ((rel(node.target, base) if inside else None),)
    return structure


def stage_pattern(node: S.Node) -> Optional[Tuple[str, int]]:
    """(prefix, start) when the children are named prefix{start}, prefix{start+1}, ..."""
    names = [S.child_segment(c, i) for i, c in enumerate(S.children_of(node))]
    match = re.fullmatch(r"(.*?)(\d+)", names[0]) if names else None
    if not match:
        return None
    prefix, start = match.group(1), int(match.group(2))
    return (prefix, start) if names == [f"{prefix}{start + i}" for i in range(len(names))] else None


def _external_shared(node: S.Node, path: str) -> bool:
    return any(isinstance(n, S.Shared) and not (path == "" or n.target.startswith(path + "."))
               for _, n in preorder(node, path))


def _targets_of_outside_shared(spec: S.ModelSpec, containers) -> set:
    """Container paths holding a layer that a Shared node outside them calls again."""
    shared = [(p, n.target) for p, n in preorder(spec.root) if isinstance(n, S.Shared)]
    return {c for c, _ in containers if c and any(t.startswith(c + ".") and not (p == c or p.startswith(c + "."))
                                                  for p, t in shared)}


def decide_classes(spec: S.ModelSpec, infos, inline_shared_targets: bool = False
                   ) -> Tuple[Dict[str, tuple], Dict[tuple, List[str]], set, set]:
    """(signature per container, members per signature, class member paths, stage paths).
    `inline_shared_targets`: a container holding a layer that a Shared node outside
    it calls again is written inline, not as a class instance (Keras: its builder
    function would create the layer where the other call cannot reach it)."""
    containers = [(p, n) for p, n in preorder(spec.root) if isinstance(n, S.CONTAINERS)]
    held = _targets_of_outside_shared(spec, containers) if inline_shared_targets else set()
    sigs = {p: signature(n, p, p, infos) for p, n in containers}
    groups: Dict[tuple, List[str]] = {}
    for p, _ in containers:
        groups.setdefault(sigs[p], [])
        if p not in held:
            groups[sigs[p]].append(p)
    nodes = dict(containers)

    def repeated(p):
        return p in sigs and p not in held and len(groups[sigs[p]]) >= 2 and not _external_shared(nodes[p], p)

    stages = {p for p, n in containers if p and isinstance(n, S.Sequential) and len(n.children) >= 2
              and all(repeated(S.join(p, S.child_segment(c, i))) for i, c in enumerate(n.children))
              and stage_pattern(n)}

    def absorbed(members):
        for k in range(1, max(len(m.split(".")) for m in members) + 1):
            ups = [parent(m, k) for m in members]
            if any(u is None or u in stages for u in ups):
                return False
            if len({sigs[u] for u in ups}) == 1 and len(groups[sigs[ups[0]]]) == len(members):
                return True
        return False

    chosen = {""}
    for p, _ in containers:
        if p and p not in stages and repeated(p) and not absorbed(groups[sigs[p]]):
            chosen.add(p)
    return sigs, groups, chosen, stages


# ----------------------------------------------------------------------- fitting


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def fit(values: list, params: List[str], known: Dict[str, list], allow_offset: bool = True) -> Optional[str]:
    """An expression in `params` equal to `values` on every instance, or None."""
    for p in params:
        ref = known[p]
        if ref == values:
            return p
        if not (all(map(_is_int, values)) and all(map(_is_int, ref))):
            continue
        if p != "in_channels":
            for k in (2, 3, 4, 6, 8):
                if values == [k * r for r in ref]:
                    return f"{k} * {p}"
        for k in (2, 4) if p != "in_channels" else ():
            if all(r % k == 0 for r in ref) and values == [r // k for r in ref]:
                return f"{p} // {k}"
        offsets = {v - r for v, r in zip(values, ref)}
        if allow_offset and len(offsets) == 1:
            offset = offsets.pop()
            return f"{p} + {offset}" if offset > 0 else f"{p} - {-offset}"
    return None


def param_name(rel_path: str, fld: str, taken) -> str:
    short = FIELD_NAMES.get(fld, fld)
    if short not in taken:
        return short
    prefix = re.sub(r"\W", "_", rel_path.replace(".", "_")) or "out"
    name = f"{prefix}_{short}"
    return name if not name[0].isdigit() else f"l{name}"
