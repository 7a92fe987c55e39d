"""Aligning a zoo model's layers with a spec: framework-neutral.

Each zoo adapter (`refnets/backends/<framework>/zoo.py`) describes the zoo model
as a list of `native.NativeLayer`s, read by that framework's reader: its
parameterised layers (conv, dense, batchnorm) with their configuration and a
`Slot` per canonical parameter, which reads and writes the zoo's own variable in
the canonical layout. `bind` pairs them with
the spec's parameterised nodes, by name (Keras: the zoo's layer names follow the
spec paths) or by order (Gluon, torchvision: registration order is execution
order in their zoo models), and raises `ZooMismatchError` naming the first pair
that differs. Imports no framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import rules, shapes
from .. import spec as S
from ..native import NativeLayer, Slot  # noqa: F401 (Slot: part of this module's API)
from ..weights import WeightMismatchError, Weights



class ZooMismatchError(WeightMismatchError):
    """A zoo model does not fit the spec it is imported into; names the first mismatch."""


@dataclass(frozen=True)
class SpecLayer:
    path: str
    node: S.Node
    params: Dict[str, Tuple[int, ...]]

    @property
    def kind(self) -> str:
        return rules.kind(self.node)

    def describe(self) -> str:
        shapes_ = ", ".join(f"{p} {tuple(s)}" for p, s in self.params.items())
        return f"spec node {self.path!r} ({type(self.node).__name__}: {shapes_}{''.join(_spec_attrs(self.node))})"


def _spec_attrs(node: S.Node):
    if isinstance(node, S.Conv2d):
        yield f", stride={tuple(node.stride)!r}"
    if isinstance(node, S.BatchNorm):
        yield f", eps={node.eps!r}, affine={node.affine!r}"


def spec_layers(model: S.ModelSpec) -> List[SpecLayer]:
    """The spec's parameterised nodes in execution order, with canonical shapes."""
    out = []
    for path, info in shapes.infer(model).items():
        if rules.has_params(info.node):
            out.append(SpecLayer(path, info.node, shapes.node_param_shapes(info)))
    return out


def _difference(ours: SpecLayer, theirs: NativeLayer) -> Optional[str]:
    """Why a spec node and a zoo layer differ, or None if they agree."""
    if ours.kind != theirs.kind:
        return f"a {ours.kind} in the spec, a {theirs.kind} in the zoo"
    if set(ours.params) != set(theirs.slots):
        return f"parameters {sorted(ours.params)} in the spec, {sorted(theirs.slots)} in the zoo"
    for param, shape in ours.params.items():
        if tuple(theirs.slots[param].shape) != tuple(shape):
            return f"{param} has shape {tuple(shape)} in the spec, {tuple(theirs.slots[param].shape)} in the zoo"
    node, attrs = ours.node, theirs.config
    if isinstance(node, S.Conv2d) and "stride" in attrs and tuple(attrs["stride"]) != tuple(node.stride):
        return f"stride {tuple(node.stride)} in the spec, {tuple(attrs['stride'])} in the zoo"
    if isinstance(node, S.BatchNorm):
        if "affine" in attrs and attrs["affine"] != node.affine:
            return f"affine={node.affine} in the spec, {attrs['affine']} in the zoo"
        if "eps" in attrs and not math.isclose(float(attrs["eps"]), node.eps, rel_tol=1e-6):
            return f"eps {node.eps!r} in the spec, {attrs['eps']!r} in the zoo"
    return None


def _mismatch(model: S.ModelSpec, message: str) -> ZooMismatchError:
    options = ", ".join(f"{k}={v!r}" for k, v in model.options if k == "layout")
    label = f"{model.name}" + (f" ({options})" if options else "")
    return ZooMismatchError(f"the zoo model does not match {label}: {message}")


def bind_by_order(model: S.ModelSpec, native: Sequence[NativeLayer]) -> Dict[str, Tuple[SpecLayer, NativeLayer]]:
    """Pair the i-th parameterised spec node with the i-th zoo layer."""
    ours = spec_layers(model)
    pairs = {}
    for index, (mine, theirs) in enumerate(zip(ours, native)):
        why = _difference(mine, theirs)
        if why:
            raise _mismatch(model, f"first mismatch at parameterised layer #{index}: {mine.describe()} vs "
                                   f"{theirs.describe()}: {why}")
        pairs[mine.path] = (mine, theirs)
    if len(ours) != len(native):
        extra = (f"{ours[len(native)].describe()} has no zoo counterpart" if len(ours) > len(native)
                 else f"{native[len(ours)].describe()} has no spec counterpart")
        raise _mismatch(model, f"the spec has {len(ours)} parameterised layers, the zoo model {len(native)}; "
                               f"first mismatch at #{min(len(ours), len(native))}: {extra}")
    return pairs


def bind_by_name(model: S.ModelSpec, native: Sequence[NativeLayer],
                 native_name: Callable[[str], str]) -> Dict[str, Tuple[SpecLayer, NativeLayer]]:
    """Pair each parameterised spec node with the zoo layer named `native_name(path)`."""
    by_name = {layer.name: layer for layer in native}
    pairs, used = {}, set()
    for mine in spec_layers(model):
        name = native_name(mine.path)
        theirs = by_name.get(name)
        if theirs is None:
            raise _mismatch(model, f"first mismatch: {mine.describe()} has no zoo layer named {name!r}")
        why = _difference(mine, theirs)
        if why:
            raise _mismatch(model, f"first mismatch: {mine.describe()} vs {theirs.describe()}: {why}")
        pairs[mine.path] = (mine, theirs)
        used.add(name)
    extra = [layer for layer in native if layer.name not in used]
    if extra:
        raise _mismatch(model, f"first mismatch: {extra[0].describe()} has no spec counterpart "
                               f"({len(extra)} zoo layer(s) unmatched)")
    return pairs


class Binding:
    """A zoo model bound to a spec: canonical name -> Slot, plus the pairs."""

    def __init__(self, model: S.ModelSpec, pairs: Dict[str, Tuple[SpecLayer, NativeLayer]]):
        self.spec = model
        self.pairs = pairs
        self.slots: Dict[str, Slot] = {S.join(path, p): slot for path, (_, layer) in pairs.items()
                                       for p, slot in layer.slots.items()}

    def read(self) -> Weights:
        """A fresh copy of every weight (each Slot.read returns a new array)."""
        return {name: np.asarray(slot.read()) for name, slot in self.slots.items()}

    def write(self, weights: Mapping[str, np.ndarray]) -> None:
        """Assign `weights` (a subset of the canonical names) to the zoo model."""
        unknown = sorted(set(weights) - set(self.slots))
        if unknown:
            raise KeyError(f"no zoo variable for {unknown}")
        for name, value in weights.items():
            slot = self.slots[name]
            if slot.write is None:
                raise TypeError(f"zoo variable {name!r} is read-only")
            if tuple(np.shape(value)) != tuple(slot.shape):
                raise ValueError(f"{name}: expected {tuple(slot.shape)}, got {tuple(np.shape(value))}")
            slot.write(np.asarray(value))

    def capture_points(self) -> Dict[str, NativeLayer]:
        """spec path -> zoo layer whose output equals that node's output: the
        parameterised node itself, or the activation node right after it when the
        zoo fuses that activation into the layer."""
        points = {}
        for path, (_, layer) in self.pairs.items():
            kind = layer.config.get("activation")
            if not kind:
                points[path] = layer
                continue
            after = following_node(self.spec, path)
            if after is not None and isinstance(after[1], S.Activation) and after[1].kind == kind:
                points[after[0]] = layer
        return points


def following_node(model: S.ModelSpec, path: str) -> Optional[Tuple[str, S.Node]]:
    """(path, node) of the sibling right after `path` in its Sequential, if any."""
    parent_path, _, segment = path.rpartition(".")
    parent = S.find(model.root, parent_path)
    if not isinstance(parent, S.Sequential):
        return None
    kids = list(parent.children)
    segments = [S.child_segment(c, i) for i, c in enumerate(kids)]
    index = segments.index(segment)
    if index + 1 >= len(kids):
        return None
    return S.join(parent_path, segments[index + 1]), kids[index + 1]
