"""Mapping the reference's weights onto a port by graph position.

The port is traced into a spec (`refnets.trace`); the two specs are aligned
(`align`) and compared (`diff`); every aligned pair of parameterised nodes pairs
the reference node with the port's native layer that holds the aligned node's
weights. Roles the port has and the reference lacks (a conv bias, a BatchNorm
scale) get the neutral value (0, or 1 for a scale), so the structural difference,
not a random initial value, is what the numbers show. Imports no framework.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
from refnets import rules
from refnets import spec as S
from refnets.native import NativeLayer

from .diff import StructuralDiff, structural_diff
from .match import Mapping, reference_layers, shapes_text

NEUTRAL_VALUE = {"bias": 0.0, "weight": 1.0, "running_mean": 0.0, "running_var": 1.0}


def graph_mapping(spec: S.ModelSpec, traced, user_layers: List[NativeLayer]):
    """(Mapping, StructuralDiff) of the reference spec onto the traced port, whose
    parameterised layers the reader listed as `user_layers`."""
    diff = structural_diff(spec, traced.spec)
    refs = {r.path: r for r in reference_layers(spec)}
    by_name = {u.name: u for u in user_layers}
    mapping = Mapping()
    taken = set()
    why = {d.where: d.detail for d in diff.differences}
    for a, b in diff.alignment.pairs:
        if a.path not in refs or not rules.has_params(b.node) or rules.kind(a.node) != rules.kind(b.node):
            continue
        user = by_name.get(traced.owners.get(b.path, ""))
        if user is None or user.name in taken:
            continue
        if not _fits(refs[a.path], user):
            why[a.path] = (f"expected a {refs[a.path].kind} layer with {shapes_text(refs[a.path].params)}; the port "
                           f"layer at its place, '{user.name}' ({user.type_name}), has {shapes_text(user.params)}")
            continue
        taken.add(user.name)
        mapping.pairs.append((refs[a.path], user))
    paired = {r.path for r, _ in mapping.pairs}
    mapping.unmatched_ref = [(r, why.get(r.path, "no aligned layer of the same kind in the port"))
                             for path, r in refs.items() if path not in paired]
    mapping.unmatched_user = [(u, "no aligned reference layer") for u in user_layers if u.name not in taken]
    return mapping, diff


def _fits(ref, user: NativeLayer) -> bool:
    """The port layer can take the reference node's weights: same shapes for every
    reference role; extra port roles get neutral values."""
    return all(role in user.params and tuple(user.params[role]) == tuple(shape) for role, shape in ref.params.items())


def graph_assignment(mapping: Mapping, weights: Dict[str, np.ndarray], dtype) -> Dict[str, Dict[str, np.ndarray]]:
    """port layer -> role -> array: the reference's weights, neutral values for roles only the port has."""
    out = {}
    for ref, user in mapping.pairs:
        roles = {role: weights[f"{ref.path}.{role}"] for role in ref.params}
        for role, shape in user.params.items():
            if role not in roles:
                roles[role] = np.full(shape, NEUTRAL_VALUE.get(role, 0.0), dtype=dtype)
        out[user.name] = roles
    return out


def summary_lines(diff: StructuralDiff) -> List[str]:
    if diff.identical:
        return ["structure: the port's traced graph matches the reference node for node"]
    lines = [f"structure: {len(diff.differences)} difference(s) between the reference and the port"]
    lines += [f"  {line}" for line in diff.summary()]
    if not diff.copyable:
        lines.append("  the reference's weights cannot be copied onto the port: no forward pass")
    return lines
