"""Per-node comparison: which spec node is the first whose output diverges.

Every node's output is captured in the reference and in the other backend and
compared with the run's tolerance, in execution order. A divergent node whose
own input still agrees is where the fault is (`origin`): its input is the output
of the node that feeds it (`refnets.spec.input_sources`), or the model input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from refnets import spec as S

from .metrics import Comparison, RecentComparisons


@dataclass(frozen=True)
class NodeComparison:
    path: str
    kind: str
    source: Optional[str]  # the node feeding this one; None for the model input
    comparison: Comparison


@dataclass(frozen=True)
class Localisation:
    nodes: List[NodeComparison]
    first_divergent: Optional[NodeComparison]
    input_agrees: Optional[bool]  # does the first divergent node's input agree?
    # False when only some nodes were compared (a zoo model) and the first divergent
    # node's `source` is the nearest compared node upstream, not its direct input.
    direct: bool = True

    def as_dict(self) -> dict:
        first = self.first_divergent
        return {
            "first_divergent": None if first is None else {
                "node": first.path, "type": first.kind, "source": first.source,
                "input_agrees": self.input_agrees, "source_is_direct_input": self.direct,
                **first.comparison.as_dict()},
            "nodes": [{"node": n.path, "type": n.kind, **n.comparison.as_dict()} for n in self.nodes],
        }


def capture_paths(model: S.ModelSpec) -> List[str]:
    """Every node except the root (whose output is the model output)."""
    return [path for path, _ in model.walk() if path]


def _compared_source(path: str, sources: Dict[str, Optional[str]], compared) -> Tuple[Optional[str], bool]:
    """The nearest compared node upstream of `path` (None: the model input), and
    whether it is `path`'s direct input."""
    source, direct = sources[path], True
    while source is not None and source not in compared:
        source, direct = sources[source], False
    return source, direct


def localise(model: S.ModelSpec, ref: Dict[str, np.ndarray], out: Dict[str, np.ndarray],
             rtol: float, atol: float, paths: Optional[Sequence[str]] = None) -> Localisation:
    """Compare the nodes in `paths` (default: every node), in execution order."""
    paths = capture_paths(model) if paths is None else list(paths)
    # A node whose capture is the very same memory as another's in both backends (a
    # Sequential and its last child; an Identity and its input) is compared once.
    comparisons = RecentComparisons(rtol, atol, size=len(paths))
    return summarise(model, {p: comparisons.compare(out[p], ref[p]) for p in paths}, paths)


def summarise(model: S.ModelSpec, comparisons: Dict[str, Comparison],
              paths: Optional[Sequence[str]] = None) -> Localisation:
    """The localisation of per-node comparisons (`paths`, default every node, in
    execution order): the first divergent node and whether its input agrees."""
    paths = capture_paths(model) if paths is None else list(paths)
    compared = set(paths)
    sources = S.input_sources(model.root)
    kinds = {path: type(node).__name__ for path, node in model.walk()}
    upstream = {p: _compared_source(p, sources, compared) for p in paths}
    nodes = [NodeComparison(p, kinds[p], upstream[p][0], comparisons[p]) for p in paths]
    by_path = {n.path: n for n in nodes}
    first = next((n for n in nodes if not n.comparison.passed), None)
    if first is None:
        return Localisation(nodes, None, None)
    input_agrees = True if first.source is None else by_path[first.source].comparison.passed
    return Localisation(nodes, first, input_agrees, upstream[first.path][1])
