"""Two specs aligned by graph position: which node of one stands where in the other.

Both are series-parallel trees. A Sequential's children are aligned as sequences
(difflib on each node's kind, so a missing ReLU or an extra zero pad is one gap,
not a shift of everything after it); a Parallel's branches pair up in order, or
by the permutation that makes their structures match (a concat whose branches
come in another order). Dropout and Identity leaves are left out of the
sequences: they compute nothing in inference. The result is the list of aligned
leaf pairs (graph position, not greedy order and shape) and the places where the
two trees do not line up at all. Imports no framework.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from itertools import permutations
from typing import List, Optional, Tuple

from refnets import rules
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


def _align_sequences(ref: List[Placed], port: List[Placed], out: Alignment) -> None:
    matcher = difflib.SequenceMatcher(a=[_key(p.node) for p in ref], b=[_key(p.node) for p in port], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for a, b in zip(ref[i1:i2], port[j1:j2]):
                _align_nodes(a, b, out)
            continue
        common = min(i2 - i1, j2 - j1) if tag == "replace" and _same_rank(ref[i1:i2], port[j1:j2]) else 0
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
    ref, port = _branches(a), _branches(b)
    if len(ref) != len(port):
        out.mismatched.append((a, b))
        return
    order = tuple(range(len(port)))
    if a.node.merge == "concat" and len(port) <= 6:
        ref_sigs = [signature(p.node) for p in ref]
        port_sigs = [signature(p.node) for p in port]
        if ref_sigs != port_sigs:
            match = next((perm for perm in permutations(order) if [port_sigs[i] for i in perm] == ref_sigs), None)
            if match is not None and match != order:
                out.reordered.append((a.path, match))
                order = match
    for index, position in enumerate(order):
        _align_sequences(_items(ref[index].node, ref[index].path), _items(port[position].node, port[position].path),
                         out)
