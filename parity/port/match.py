"""Structural matching of a user's parameterised layers onto the reference's.

Names are not required. Each reference node, in execution order, takes an
unmatched user layer of the same kind with the same parameter shapes: the one the
port runs nearest to the previously matched layer (after it on a tie). That follows
the port's order without requiring it: a port may run a block's shortcut before
its body. Same-shaped layers can still be confused (a bottleneck's last 1x1 conv
and its projection shortcut): `repair` settles those by their inputs once weights
are in. A user name equal to the reference path (ignoring case and separators)
wins over order: names are a hint, never a requirement.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
from refnets import rules, shapes
from refnets import spec as S
from refnets.native import NativeLayer



@dataclass(frozen=True)
class RefLayer:
    path: str
    kind: str
    node: S.Node
    params: Dict[str, Tuple[int, ...]]


@dataclass
class Mapping:
    pairs: List[Tuple[RefLayer, NativeLayer]] = field(default_factory=list)  # reference execution order
    unmatched_ref: List[Tuple[RefLayer, str]] = field(default_factory=list)  # (layer, why)
    unmatched_user: List[Tuple[NativeLayer, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unmatched_ref and not self.unmatched_user

    def user_for(self, path: str) -> Optional[NativeLayer]:
        return next((u for r, u in self.pairs if r.path == path), None)

    def as_dict(self) -> dict:
        return {"pairs": [{"reference": r.path, "port": u.name, "kind": r.kind} for r, u in self.pairs],
                "unmatched_reference": [{"node": r.path, "kind": r.kind, "why": why} for r, why in self.unmatched_ref],
                "unmatched_port": [{"layer": u.name, "type": u.type_name, "why": why}
                                   for u, why in self.unmatched_user]}


def reference_layers(model: S.ModelSpec) -> List[RefLayer]:
    """The reference's parameterised nodes in execution order, with canonical shapes."""
    return [RefLayer(path, rules.kind(info.node), info.node, dict(shapes.node_param_shapes(info)))
            for path, info in shapes.infer(model).items() if rules.has_params(info.node)]


def _signature(kind: str, params: Dict[str, Tuple[int, ...]]):
    return kind, tuple(sorted(params.items()))


def _normal(name: str) -> str:
    return ".".join(t for t in re.split(r"[^0-9a-z]+", name.lower()) if t)


def shapes_text(params: Dict[str, Tuple[int, ...]]) -> str:
    return ", ".join(f"{role} {'x'.join(map(str, shape))}" for role, shape in sorted(params.items())) or "none"


def match(ref_layers: List[RefLayer], user_layers: List[NativeLayer]) -> Mapping:
    mapping = Mapping()
    position = {u.name: i for i, u in enumerate(user_layers)}
    free = list(user_layers)
    last = -1  # execution index of the previous match in the port
    for ref in ref_layers:
        wanted = _signature(ref.kind, ref.params)
        candidates = [u for u in free if _signature(u.kind, u.params) == wanted]
        if not candidates:
            mapping.unmatched_ref.append((ref, ""))
            continue
        named = [u for u in candidates if _normal(u.name) == _normal(ref.path)]
        nearest = min(candidates, key=lambda u: (abs(position[u.name] - last), position[u.name] < last))
        chosen = named[0] if named else nearest
        free.remove(chosen)
        last = position[chosen.name]
        mapping.pairs.append((ref, chosen))
    mapping.unmatched_ref = [(r, _why_unmatched(r, free, ref_layers, user_layers)) for r, _ in mapping.unmatched_ref]
    mapping.unmatched_user = [(u, _why_extra(u)) for u in free]
    return mapping


def _why_unmatched(ref: RefLayer, free: List[NativeLayer], ref_layers, user_layers) -> str:
    expected = f"expected a {ref.kind} layer with {shapes_text(ref.params)}"
    same_kind = [u for u in free if u.kind == ref.kind]
    if same_kind:
        near = min(same_kind, key=lambda u: _shape_distance(u.params, ref.params))
        return f"{expected}; nearest unmatched: '{near.name}' ({near.type_name}) with {shapes_text(near.params)}"
    ours = Counter(r.kind for r in ref_layers)[ref.kind]
    theirs = Counter(u.kind for u in user_layers)[ref.kind]
    return f"{expected}; none left (the reference has {ours} {ref.kind} layers, the port {theirs})"


def _shape_distance(a: Dict[str, tuple], b: Dict[str, tuple]) -> int:
    roles = set(a) | set(b)
    return sum(2 if (r not in a or r not in b) else int(a[r] != b[r]) for r in roles)


def _why_extra(user: NativeLayer) -> str:
    if user.kind == "other":
        return f"parameters of a {user.type_name} ({shapes_text(user.params)}) are not a conv, dense or BatchNorm"
    return f"no reference {user.kind} layer with {shapes_text(user.params)} is left"


def assignment(mapping: Mapping, weights: Dict[str, np.ndarray]) -> Dict[str, Dict[str, np.ndarray]]:
    """user layer -> role -> canonical array, for the adapter's `set_params`."""
    return {user.name: {role: weights[f"{ref.path}.{role}"] for role in ref.params} for ref, user in mapping.pairs}


def swap(mapping: Mapping, ref_path: str, user: NativeLayer) -> List[Tuple[RefLayer, NativeLayer]]:
    """Give the mapped port layer `user` to the reference node `ref_path`, and the
    layer that node had to the node `user` had. Returns the two changed pairs."""
    index = next(i for i, (r, _) in enumerate(mapping.pairs) if r.path == ref_path)
    other = next(i for i, (_, u) in enumerate(mapping.pairs) if u.name == user.name)
    (ref, previous), (other_ref, _) = mapping.pairs[index], mapping.pairs[other]
    mapping.pairs[index], mapping.pairs[other] = (ref, user), (other_ref, previous)
    return [mapping.pairs[index], mapping.pairs[other]]


def same_shape_layers(mapping: Mapping, ref: RefLayer) -> List[NativeLayer]:
    """Every mapped port layer that could take `ref`'s weights."""
    wanted = _signature(ref.kind, ref.params)
    return [u for _, u in mapping.pairs if _signature(u.kind, u.params) == wanted]
