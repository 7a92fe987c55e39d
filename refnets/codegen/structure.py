"""Framework-neutral questions an emitter asks about a node inside a class's
template: is it an instance of another class, a stage, a container that can be
one sequential callable, and the Python names for its local variables.

This module imports no framework.
"""

from __future__ import annotations

import keyword
import re
from typing import Dict, Iterator, Tuple

from .. import spec as S
from .plan import ClassPlan, Plan

FUNCTIONAL = (S.Activation, S.Identity, S.Flatten, S.GlobalAvgPool, S.Shared)


def identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def var_name(name: str, taken: set) -> str:
    """A fresh local variable name after a spec segment name."""
    base = re.sub(r"\W", "_", name) or "y"
    if base[0].isdigit() or keyword.iskeyword(base):
        base = f"y{base}" if base[0].isdigit() else f"{base}_"
    name, index = base, 2
    while name in taken:
        name, index = f"{base}{index}", index + 1
    taken.add(name)
    return name


def kids(node: S.Node, path: str) -> Iterator[Tuple[str, str, S.Node]]:
    """(segment, path, child) of a container."""
    for index, child in enumerate(S.children_of(node)):
        segment = S.child_segment(child, index)
        yield segment, S.join(path, segment), child


class Template:
    """One class's template: the representative member's subtree."""

    def __init__(self, plan: Plan, cls: ClassPlan):
        self.plan, self.cls = plan, cls

    def rel(self, path: str) -> str:
        return path[len(self.cls.path) + 1:] if self.cls.path else path

    def instance(self, path: str):
        """The class of the node at `path` where it is another class's instance."""
        found = self.plan.class_at.get(path)
        return found if found is not None and path != self.cls.path else None

    def stage(self, path: str):
        return self.cls.stages.get(self.rel(path))

    def opaque(self, path: str) -> bool:
        """Built by a call and used as one callable: an instance or a stage."""
        return self.instance(path) is not None or self.stage(path) is not None

    def sequential_callable(self, node: S.Node, path: str) -> bool:
        """A Sequential that one framework sequential container can hold: no
        Parallel and no Shared below it (except inside instances and stages)."""
        if not isinstance(node, S.Sequential) or self.opaque(path):
            return False
        for _, sub_path, child in kids(node, path):
            if self.opaque(sub_path):
                continue
            if isinstance(child, (S.Parallel, S.Shared)):
                return False
            if isinstance(child, S.Sequential) and not self.sequential_callable(child, sub_path):
                return False
        return True

    def expr(self, path: str, fld: str) -> str:
        return self.cls.exprs[(self.rel(path), fld)]

    def args(self, path: str):
        """Argument expressions of an instance (its class's parameters, in order)."""
        child = self.instance(path)
        return [self.expr(path, p) for p in child.params]


def numbered(node: S.Node) -> bool:
    """Children named 0, 1, 2, ... (a plain sequential container's own names)."""
    return [S.child_segment(c, i) for i, c in enumerate(S.children_of(node))] == \
        [str(i) for i in range(len(S.children_of(node)))]


def used_types(plan: Plan) -> Dict[type, int]:
    counts: Dict[type, int] = {}
    for _, node in plan.spec.walk():
        counts[type(node)] = counts.get(type(node), 0) + 1
    return counts
