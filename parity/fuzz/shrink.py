"""A failing problem shrunk to a minimal one that still fails the same way.

Greedy delta debugging: candidate simplifications are tried one at a time, largest
first (drop a node, replace a Parallel by one of its branches, unwrap a one-child
Sequential; then smaller settings of each node: channels, kernel, stride, dilation,
groups, padding, flags; then a smaller input and batch). A candidate is kept when it
is a valid spec (the spec's own shape inference) and the backend still fails on it
as before (`Verdict.same_failure`); the passes repeat until none changes anything,
or the evaluation budget is spent.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Optional

from refnets import spec as S

from .generate import is_valid
from .run import Problem, Verdict

MAX_EVALUATIONS = 400

Check = Callable[[Problem], Verdict]


def shrink(problem: Problem, check: Check, failure: Verdict, budget: int = MAX_EVALUATIONS) -> Problem:
    """The smallest problem found that `check` still fails like `failure`."""
    spent = 0
    changed = True
    while changed and spent < budget:
        changed = False
        for candidate in candidates(problem):
            if spent >= budget:
                break
            if candidate == problem or not is_valid(candidate.model):
                continue
            spent += 1
            if failure.same_failure(check(candidate)):
                problem, changed = candidate, True
                break
    return problem


def candidates(problem: Problem) -> Iterator[Problem]:
    """Simpler problems, the biggest simplifications first."""
    model = problem.model
    for root in _structural(model.root):
        yield dataclasses.replace(problem, model=dataclasses.replace(model, root=root))
    for root in _settings(model.root):
        yield dataclasses.replace(problem, model=dataclasses.replace(model, root=root))
    if problem.batch > 1:
        yield dataclasses.replace(problem, batch=1)
    c, h, w = model.input_shape
    for shape in ((1, h, w), (c // 2, h, w), (c - 1, h, w), (c, h // 2, w), (c, h - 1, w), (c, h, w // 2),
                  (c, h, w - 1)):
        if min(shape) >= 1 and shape != model.input_shape:
            yield dataclasses.replace(problem, model=model.with_input_shape(shape))


# ------------------------------------------------------------------ structure


def _containers(root: S.Node):
    return [(path, node) for path, node in S.walk(root) if isinstance(node, S.CONTAINERS)]


def _structural(root: S.Node) -> Iterator[S.Node]:
    for path, node in _containers(root):
        kids = S.children_of(node)
        for index in range(len(kids)):
            rest = kids[:index] + kids[index + 1:]
            if isinstance(node, S.Parallel) and len(rest) == 1:
                yield _put(root, path, _renamed(rest[0], node.name))
            elif rest or path == "":
                yield _put(root, path, _with_kids(node, rest))
        if isinstance(node, S.Parallel):
            for kid in kids:
                yield _put(root, path, _renamed(kid, node.name))
        if isinstance(node, S.Sequential) and len(kids) == 1 and path:
            yield _put(root, path, _renamed(kids[0], node.name))


def _put(root: S.Node, path: str, new: S.Node) -> S.Node:
    return S.replace(root, path, lambda _old: new)


def _with_kids(node: S.Node, kids) -> S.Node:
    field = "children" if isinstance(node, S.Sequential) else "branches"
    return dataclasses.replace(node, **{field: tuple(kids)})


def _renamed(node: S.Node, name: str) -> S.Node:
    """`node` in its parent's place, under the parent's name (so paths elsewhere hold)."""
    return dataclasses.replace(node, name=name)


# ------------------------------------------------------------------- settings


def _settings(root: S.Node) -> Iterator[S.Node]:
    for path, node in list(S.walk(root)):
        if isinstance(node, S.CONTAINERS) or not path:
            continue
        for simpler in simpler_nodes(node):
            yield _put(root, path, simpler)


def simpler_nodes(node: S.Node) -> Iterator[S.Node]:
    """`node` with one setting made simpler at a time."""
    for name, value in _simpler_values(node):
        if getattr(node, name) != value:
            yield dataclasses.replace(node, **{name: value})


def _smaller_pair(pair) -> list:
    h, w = pair
    return [(1, 1), (h, 1), (1, w), (max(1, h - 1), w), (h, max(1, w - 1))]


def _simpler_values(node: S.Node):
    if isinstance(node, S.Conv2d):
        yield "groups", 1
        yield from (("out_channels", v) for v in _fewer(node.out_channels, node.groups))
        yield from (("kernel", v) for v in _smaller_pair(node.kernel))
        yield from (("stride", v) for v in _smaller_pair(node.stride))
        yield from (("dilation", v) for v in _smaller_pair(node.dilation))
        yield "bias", False
    if isinstance(node, (S.MaxPool, S.AvgPool)):
        yield from (("kernel", v) for v in _smaller_pair(node.kernel))
        yield from (("stride", v) for v in _smaller_pair(node.stride))
        yield "ceil_mode", False
    if isinstance(node, S.AvgPool):
        yield "count_include_pad", node.padding == S.SAME
    if isinstance(node, (S.Conv2d, S.MaxPool, S.AvgPool, S.ZeroPad)):
        yield from (("padding", v) for v in _smaller_padding(node.padding))
    if isinstance(node, S.BatchNorm):
        yield "affine", False
        yield "eps", 1e-5
    if isinstance(node, S.Dense):
        yield from (("out_features", v) for v in _fewer(node.out_features, 1))
        yield "bias", False
    if isinstance(node, S.AdaptiveAvgPool):
        yield from (("output_size", v) for v in _smaller_pair(node.output_size))
    if isinstance(node, S.Activation) and node.kind != "relu":
        yield "kind", "relu"


def _fewer(n: int, step: int) -> list:
    return [v for v in (step, n // 2 - (n // 2) % step, n - step) if 0 < v < n]


def _smaller_padding(padding) -> list:
    zero = (0, 0, 0, 0)
    if padding == S.SAME:
        return [zero]
    t, b, l, r = padding
    options = [zero, (t, b, 0, 0), (0, 0, l, r)]
    options += [tuple(max(0, v - (i == j)) for i, v in enumerate(padding)) for j in range(4)]
    return [p for p in options if p != padding]


def describe(problem: Problem) -> str:
    leaves = [n for _, n in S.walk(problem.model.root) if not isinstance(n, S.CONTAINERS)]
    kinds = ", ".join(type(n).__name__ for n in leaves) or "nothing"
    c, h, w = problem.model.input_shape
    return f"{len(leaves)} node(s) [{kinds}] on a {problem.batch}x{c}x{h}x{w} input"


def first_failure(verdicts) -> Optional[Verdict]:
    return next((v for v in verdicts if v.failed), None)
