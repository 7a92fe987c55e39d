"""A traced graph -> a series-parallel spec with the model's weights.

From the input, a chain of single-consumer ops becomes a run of `Sequential`
children. Where a value feeds several ops (a fork), the branches run until the
first op that every path from the fork passes through (its immediate
post-dominator), which must be a merge (`add` or `concat`); each of the merge's
inputs, in the merge's order (concat order matters), is one branch of a
`Parallel`, decomposed the same way; a merge input that is the fork's value itself
is an `Identity` branch (a residual shortcut, DenseNet's concat). A graph that is
not series-parallel (two forks whose branches cross) cannot be written in the
spec and is refused, naming the ops.

Ops that apply the same native layer (same `owner`) after its first use become
`spec.Shared` nodes pointing at the first use, so the weights have one entry.

Imports no framework.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Dict, List, Set

import numpy as np

from .. import shapes
from .. import spec as S
from .graph import INPUT, TracedGraph, TracedOp, UntraceableError


@dataclass
class Traced:
    """A traced model: the spec, its canonical weights, and per spec path the native
    op it came from (for messages and per-layer comparison)."""

    spec: S.ModelSpec
    weights: Dict[str, np.ndarray]
    framework: str
    origins: Dict[str, str] = field(default_factory=dict)
    owners: Dict[str, str] = field(default_factory=dict)  # spec path -> the native layer holding its weights


def segment_name(op_id: str) -> str:
    """A native op id as a spec name segment (no dots or slashes)."""
    return re.sub(r"[./:]", "_", op_id) or "op"


class _Graph:
    """Consumers, topological positions and reachability of a traced graph."""

    def __init__(self, traced: TracedGraph):
        self.ops: Dict[str, TracedOp] = {}
        self.position: Dict[str, int] = {INPUT: -1}
        for index, op in enumerate(traced.ops):
            if op.id in self.ops or op.id == INPUT:
                raise UntraceableError(f"two ops share the id {op.id!r}")
            missing = [i for i in op.inputs if i not in self.position]
            if missing:
                raise UntraceableError(f"op {op.id!r} reads {missing[0]!r}, which is not computed before it")
            if (op.node is None) == (op.merge is None):
                raise UntraceableError(f"op {op.id!r} must be either a spec node or a merge")
            self.ops[op.id] = op
            self.position[op.id] = index
        if traced.output not in self.ops:
            raise UntraceableError(f"the output {traced.output!r} is not an op of the graph")
        self.live = self.ancestors(traced.output) | {traced.output}
        self.consumers: Dict[str, List[str]] = {key: [] for key in self.position}
        for op in traced.ops:
            if op.id in self.live:
                for source in dict.fromkeys(op.inputs):
                    self.consumers[source].append(op.id)

    def ancestors(self, op_id: str) -> Set[str]:
        found: Set[str] = set()
        stack = list(self.ops[op_id].inputs) if op_id in self.ops else []
        while stack:
            current = stack.pop()
            if current not in found:
                found.add(current)
                stack.extend(self.ops[current].inputs if current in self.ops else ())
        return found

    def descendants(self, op_id: str, within: Set[str]) -> Set[str]:
        found: Set[str] = set()
        stack = [c for c in self.consumers[op_id] if c in within]
        while stack:
            current = stack.pop()
            if current not in found:
                found.add(current)
                stack.extend(c for c in self.consumers[current] if c in within)
        return found

    def join_of(self, fork: str, within: Set[str]) -> str:
        """The first op after `fork` that every path from it (inside `within`) passes through."""
        ordered = sorted(within, key=self.position.__getitem__)
        reach = max(self.position[c] for c in self.consumers[fork] if c in within)
        for op_id in ordered:
            if self.position[op_id] >= reach:
                return op_id
            reach = max([reach] + [self.position[c] for c in self.consumers[op_id] if c in within])
        raise UntraceableError(f"the branches that start after {fork!r} never join")


class _Decomposer:
    def __init__(self, traced: TracedGraph):
        self.graph = _Graph(traced)
        self.names: Dict[str, str] = {}
        self.emitted: Set[str] = set()

    def emit(self, op_id: str) -> str:
        """The spec name of an op placed in the tree; an op placed twice means two
        branches share an intermediate value, which the spec cannot write."""
        if op_id in self.emitted:
            raise UntraceableError(f"the output of op {op_id!r} feeds branches that merge at different places: "
                                   f"the graph is not series-parallel")
        self.emitted.add(op_id)
        return self.name_of(op_id)

    def name_of(self, op_id: str) -> str:
        if op_id not in self.names:
            base = segment_name(op_id)
            name, count = base, 1
            while name in self.names.values():
                count += 1
                name = f"{base}_{count}"
            self.names[op_id] = name
        return self.names[op_id]

    def series(self, src: str, end: str, within: Set[str]) -> List[S.Node]:
        """The nodes that turn value `src` into value `end`, using ops in `within`."""
        items: List[S.Node] = []
        current = src
        while current != end:
            nexts = [c for c in self.graph.consumers[current] if c in within]
            if not nexts:
                raise UntraceableError(f"op {current!r} does not lead to {end!r}")
            if len(nexts) == 1 and self.graph.ops[nexts[0]].merge is None:
                op = self.graph.ops[nexts[0]]
                items.append(dataclasses.replace(op.node, name=self.emit(op.id)))
                current = op.id
                continue
            join = self.graph.join_of(current, within)
            items.append(self.parallel(current, self.graph.ops[join], within))
            current = join
        return items

    def parallel(self, fork: str, merge: TracedOp, within: Set[str]) -> S.Parallel:
        if merge.merge is None:
            raise UntraceableError(f"the branches after {fork!r} join at {merge.id!r}, which is not an add or a "
                                   f"concat: the graph is not series-parallel")
        from_fork = self.graph.descendants(fork, within)
        branches = []
        for index, source in enumerate(merge.inputs):
            if source == fork:
                branches.append(S.Identity(name=f"branch{index}"))
                continue
            if source not in from_fork:
                raise UntraceableError(f"merge {merge.id!r} reads {source!r}, which does not come from the fork at "
                                       f"{fork!r}: the graph is not series-parallel")
            inner = (self.graph.ancestors(source) | {source}) & from_fork
            nodes = self.series(fork, source, inner)
            branches.append(nodes[0] if len(nodes) == 1 else S.Sequential(name=f"branch{index}",
                                                                           children=tuple(nodes)))
        return S.Parallel(name=self.emit(merge.id), branches=tuple(branches), merge=merge.merge)


def _share(root: S.Node, ops_by_name: Dict[str, TracedOp]):
    """Later uses of a layer -> `Shared` nodes; the weights of each first use by spec path."""
    first: Dict[str, str] = {}
    shared: List[tuple] = []
    weights: Dict[str, np.ndarray] = {}
    origins: Dict[str, str] = {}
    owners: Dict[str, str] = {}
    for path, node in S.walk(root):
        op = ops_by_name.get(node.name) if not isinstance(node, S.CONTAINERS) else None
        if op is None:
            continue
        origins[path] = op.id
        owners[path] = op.layer
        if not op.weights:
            continue
        if op.layer in first:
            shared.append((path, first[op.layer], op))
            continue
        first[op.layer] = path
        weights.update({f"{path}.{role}": array for role, array in op.weights.items()})
    for path, target, op in shared:
        original = ops_by_name[S.find(root, target).name]
        if dataclasses.replace(original.node, name="") != dataclasses.replace(op.node, name=""):
            raise UntraceableError(f"layer {op.layer!r} is applied at {original.id!r} and {op.id!r} with different "
                                   f"settings")
        root = S.replace(root, path, lambda node, target=target: S.Shared(name=node.name, target=target))
    return root, weights, origins, owners


def _check_weights(expected: Dict[str, tuple], weights: Dict[str, np.ndarray]) -> None:
    """Every canonical name the spec expects has an array of its shape (a tracer bug otherwise)."""
    wrong = [f"{name}: the spec expects {shape}, the model holds "
             f"{tuple(np.shape(weights[name])) if name in weights else 'nothing'}"
             for name, shape in expected.items() if tuple(np.shape(weights.get(name, ()))) != tuple(shape)]
    extra = sorted(set(weights) - set(expected))
    if wrong or extra:
        raise UntraceableError("the traced weights do not fit the spec: " + "; ".join(wrong + [f"{n}: not in the spec"
                                                                                                 for n in extra]))


def decompose(traced: TracedGraph, dtype: str = "float32") -> Traced:
    """The series-parallel spec of a traced graph, its canonical weights (cast to
    `dtype`) and the native op behind every spec path."""
    work = _Decomposer(traced)
    within = work.graph.live
    nodes = work.series(INPUT, traced.output, within)
    root = S.Sequential(children=tuple(nodes))
    ops_by_name = {work.names[op_id]: work.graph.ops[op_id] for op_id in work.names}
    root, weights, origins, owners = _share(root, ops_by_name)
    try:
        model = S.ModelSpec(name=traced.name, root=root, input_shape=tuple(traced.input_shape))
        expected = shapes.param_shapes(model)
    except (ValueError, TypeError) as error:
        raise UntraceableError(f"the traced graph does not make a consistent spec: {error}") from error
    _check_weights(expected, weights)
    weights = {key: np.asarray(value, dtype=dtype) for key, value in weights.items()}
    return Traced(spec=model, weights=weights, framework=traced.framework, origins=origins, owners=owners)

