"""Two specs aligned by graph position: which node of one stands where in the other.

Both are series-parallel trees. A Sequential's children are aligned as sequences
(a weighted longest common subsequence of their kinds, so a missing ReLU or an extra zero pad is one gap,
not a shift of everything after it); a Parallel's branches pair up in order, or
by the permutation that makes their structures match (a concat whose branches
come in another order). Dropout and Identity leaves are left out of the
sequences: they compute nothing in inference. The result is the list of aligned
leaf pairs (graph position, not greedy order and shape) and the places where the
two trees do not line up at all. Imports no framework.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from itertools import permutations
from typing import List, Optional, Tuple

from refnets import rules, shapes
from refnets import spec as S

NEUTRAL = (S.Dropout, S.Identity)


@dataclass(frozen=True)
class Placed:
    """A node with its path in its spec."""

    path: str
    node: S.Node


@dataclass
class Alignment:
    pairs: List[Tuple[Placed, Placed]] = field(default_factory=list)  # aligned leaves, reference order
    only_ref: List[Tuple[Placed, Optional[Placed]]] = field(default_factory=list)  # (node, the node before it)
    only_port: List[Tuple[Placed, Optional[Placed]]] = field(default_factory=list)  # (node, the node before it)
    reordered: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)  # (ref parallel path, port order)
    mismatched: List[Tuple[Placed, Placed]] = field(default_factory=list)  # containers that do not line up


def signature(node: S.Node) -> str:
    """A node's structure without names or weights: what must match for two
    subtrees to stand for the same computation (sizes of kernels included)."""
    if isinstance(node, S.Sequential):
        return "(" + " ".join(signature(c) for c in node.children if not isinstance(c, NEUTRAL)) + ")"
    if isinstance(node, S.Parallel):
        return f"{node.merge}[" + " | ".join(signature(b) for b in node.branches) + "]"
    if isinstance(node, S.Conv2d):
        return f"conv{node.kernel[0]}x{node.kernel[1]}/{node.out_channels}"
    if isinstance(node, S.Dense):
        return f"dense/{node.out_features}"
    return rules.kind(node)


def _key(node: S.Node) -> str:
    """What two aligned sequence elements must share: their kind (parallel: merge too)."""
    if isinstance(node, S.Parallel):
        return f"parallel-{node.merge}-{len(node.branches)}"
    if isinstance(node, S.Sequential):
        return "sequential"
    return rules.kind(node)


def _items(node: S.Node, path: str) -> List[Placed]:
    """A node as a sequence: a Sequential's children (nested Sequentials flattened), else itself."""
    if not isinstance(node, S.Sequential):
        return [] if isinstance(node, NEUTRAL) else [Placed(path, node)]
    found: List[Placed] = []
    for index, child in enumerate(node.children):
        found += _items(child, S.join(path, S.child_segment(child, index)))
    return found


def align(ref: S.Node, port: S.Node) -> Alignment:
    out = Alignment()
    _align_sequences(_items(ref, ""), _items(port, ""), out)
    return out


def _score(a: S.Node, b: S.Node) -> int:
    """How well two sequence elements match: 0 not at all (other kinds), 1 the same
    kind, 2 the same structure too (a conv with the same kernel and width)."""
    if _key(a) != _key(b):
        return 0
    return 2 if signature(a) == signature(b) else 1


def _lcs(ref: List[Placed], port: List[Placed]) -> List[Tuple[int, int]]:
    """The best order-preserving pairing of the two sequences (a weighted longest
    common subsequence): a missing or extra node is one gap, never a shift."""
    n, m = len(ref), len(port)
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            score = _score(ref[i].node, port[j].node)
            best[i][j] = max(best[i + 1][j], best[i][j + 1], best[i + 1][j + 1] + score if score else 0)
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        score = _score(ref[i].node, port[j].node)
        if score and best[i][j] == best[i + 1][j + 1] + score:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i][j] == best[i + 1][j]:
            i += 1
        else:
            j += 1
    return pairs


def _align_sequences(ref: List[Placed], port: List[Placed], out: Alignment) -> None:
    pairs = _lcs(ref, port) + [(len(ref), len(port))]
    i = j = 0
    for next_i, next_j in pairs:
        _gap(ref, port, i, next_i, j, next_j, out)
        if next_i < len(ref):
            _align_nodes(ref[next_i], port[next_j], out)
        i, j = next_i + 1, next_j + 1


def _gap(ref: List[Placed], port: List[Placed], i1: int, i2: int, j1: int, j2: int, out: Alignment) -> None:
    """Unpaired runs between two pairs: leaves of equal-length runs pair up one by
    one (a max pool where an average pool was meant); the rest is one side only."""
    common = i2 - i1 if _same_rank(ref[i1:i2], port[j1:j2]) else 0
    for a, b in zip(ref[i1:i1 + common], port[j1:j1 + common]):
        _align_nodes(a, b, out)
    for k in range(i1 + common, i2):
        out.only_ref.append((ref[k], ref[k - 1] if k else None))
    for k in range(j1 + common, j2):
        out.only_port.append((port[k], port[k - 1] if k else None))


def _same_rank(ref: List[Placed], port: List[Placed]) -> bool:
    """A replaced run pairs element by element when both runs have the same length
    and every pair is two leaves (a max pool where an average pool was meant)."""
    return len(ref) == len(port) and all(not isinstance(p.node, S.CONTAINERS) for p in ref + port)


def _align_nodes(a: Placed, b: Placed, out: Alignment) -> None:
    if isinstance(a.node, S.Parallel) and isinstance(b.node, S.Parallel):
        _align_parallel(a, b, out)
    elif isinstance(a.node, S.CONTAINERS) or isinstance(b.node, S.CONTAINERS):
        out.mismatched.append((a, b))
    else:
        out.pairs.append((a, b))


def _branches(placed: Placed) -> List[Placed]:
    node = placed.node
    return [Placed(S.join(placed.path, S.child_segment(b, i)), b) for i, b in enumerate(node.branches)]


def _align_parallel(a: Placed, b: Placed, out: Alignment) -> None:
    """Branches pair up in the order that matches most of their structures: the
    port's order for an add (it commutes), and for a concat a reordering is a
    difference (`reordered`)."""
    ref, port = _branches(a), _branches(b)
    if len(ref) != len(port):
        out.mismatched.append((a, b))
        return
    order = tuple(range(len(port)))
    if len(port) <= 6:
        ref_sigs = [signature(p.node) for p in ref]
        port_sigs = [signature(p.node) for p in port]

        def matches(perm):
            return sum(port_sigs[i] == sig for i, sig in zip(perm, ref_sigs))

        best = max(permutations(order), key=lambda perm: (matches(perm), perm == order))
        if matches(best) > matches(order):
            if a.node.merge == "concat":
                out.reordered.append((a.path, best))
            order = best
    for index, position in enumerate(order):
        _align_sequences(_items(ref[index].node, ref[index].path), _items(port[position].node, port[position].path),
                         out)

def normalised(model: S.ModelSpec) -> S.ModelSpec:
    """The model as the diff compares it, at its input size: every padding as
    numbers (TensorFlow's 'same' resolved), a zero pad folded into the conv right
    after it (the same function: `F.pad` then an unpadded conv is how ports often
    write a padded conv), and a global pool that keeps its 1x1 map then a flatten
    written as a global pool to a vector. Paths of parameterised nodes are kept."""
    infos = shapes.infer(model)
    root = model.root
    for path, info in infos.items():
        node = info.node
        if isinstance(node, (S.Conv2d, S.MaxPool, S.AvgPool)) and node.padding == S.SAME:
            root = S.replace(root, path, lambda n, hw=info.in_shape[1:]: rules.with_resolved_padding(n, hw))
    return dataclasses.replace(model, root=_fold(root))


def _pooled_to_vector(pool: S.Node, flatten: S.Node) -> bool:
    """A global pool that keeps its 1x1 map, then a flatten: a global pool to a vector."""
    whole = (isinstance(pool, S.GlobalAvgPool) and pool.keepdims) or (
        isinstance(pool, S.AdaptiveAvgPool) and tuple(pool.output_size) == (1, 1))
    return whole and isinstance(flatten, S.Flatten)


def _fold(node: S.Node) -> S.Node:
    if isinstance(node, S.Parallel):
        return dataclasses.replace(node, branches=tuple(_fold(b) for b in node.branches))
    if not isinstance(node, S.Sequential):
        return node
    children, pending = [], None
    for child in (_fold(c) for c in node.children):
        if children and pending is None and _pooled_to_vector(children[-1], child):
            children[-1] = S.GlobalAvgPool(name=children[-1].name)
            continue
        if isinstance(child, S.ZeroPad) and pending is None:
            pending = child
            continue
        if pending is not None and isinstance(child, S.Conv2d):
            child = dataclasses.replace(child, padding=tuple(a + b for a, b in zip(pending.padding, child.padding)))
        elif pending is not None:
            children.append(pending)
            if isinstance(child, S.ZeroPad):
                pending = child
                continue
        pending = None
        children.append(child)
    if pending is not None:
        children.append(pending)
    return dataclasses.replace(node, children=tuple(children))
