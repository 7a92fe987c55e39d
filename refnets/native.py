"""A native model's layers as the framework readers see them: framework-neutral.

One reader per framework (`refnets/backends/<framework>/read.py`) lists a model's
parameterised layers as `NativeLayer`s and captures their inputs and outputs.
The same records serve zoo import (`refnets.zoo_import`: a zoo model is a port
someone else wrote) and port checking (`parity --port`). Each parameter is a
`Slot` that reads and writes the framework's own variable in the canonical
layout, so weights are moved by `read` and `assign` here, not by each reader.

Imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .rules import PARAM_KINDS  # noqa: F401 (the kinds a layer may have, besides "other")


class PortModelError(ValueError):
    """The user's model cannot be examined (it does not run, returns something that
    is not one array, calls a parameterised layer twice ...): the message says why."""


@dataclass
class Slot:
    """One native variable seen in the canonical layout."""

    shape: Tuple[int, ...]  # canonical shape
    read: Callable[[], np.ndarray]
    write: Optional[Callable[[np.ndarray], None]] = None  # None: read-only (a state_dict of tensors, say)


@dataclass
class NativeLayer:
    """One parameterised layer of a native model.

    kind: one of `rules.PARAM_KINDS` ("conv", "dense", "batchnorm"), or "other"
    (parameters we cannot map). `slots`: canonical role (weight, bias,
    running_mean, running_var) -> Slot. `config`: what a comparison or a diagnosis
    may use: conv `stride`, `padding` (top, bottom, left, right), `dilation`,
    `groups`, `padding_mode`; batchnorm `eps`, `affine` (True, False, or a text
    saying what is odd about it); `activation` for a conv or dense with a fused
    activation (relu, sigmoid, tanh), whose captured output follows it.
    `inputs`: the names of the layers whose outputs feed this one ("<input>": the
    model input), where the reader can tell from the model's graph; None where
    it cannot. `handle`: the framework's own object."""

    name: str
    kind: str
    type_name: str
    slots: Dict[str, Slot] = field(default_factory=dict)
    config: Dict[str, object] = field(default_factory=dict)
    inputs: Optional[Tuple[str, ...]] = None
    handle: object = None
    other_params: Dict[str, Tuple[int, ...]] = field(default_factory=dict)  # kind "other": native name -> shape

    @property
    def params(self) -> Dict[str, Tuple[int, ...]]:
        """Canonical role -> canonical shape (native names for an "other" layer)."""
        if self.kind == "other":
            return dict(self.other_params)
        return {role: tuple(slot.shape) for role, slot in self.slots.items()}

    def describe(self) -> str:
        shapes_ = ", ".join(f"{p} {tuple(s.shape)}" for p, s in self.slots.items())
        extra = "".join(f", {k}={self.config[k]!r}" for k in ("stride", "eps", "affine") if k in self.config)
        return f"zoo layer {self.name!r} ({self.kind}: {shapes_}{extra})"


def read(layers: Sequence[NativeLayer]) -> Dict[str, Dict[str, np.ndarray]]:
    """layer -> role -> a fresh canonical copy of every parameter."""
    return {layer.name: {role: np.asarray(slot.read()) for role, slot in layer.slots.items()} for layer in layers}


def assign(layers: Mapping[str, NativeLayer], assignment: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Write canonical arrays into the named layers' slots; every name, role and
    shape is checked before anything is written (PortModelError names the first
    problem)."""
    staged = []
    for name, roles in assignment.items():
        layer = layers.get(name)
        if layer is None:
            raise PortModelError(f"no layer {name!r} in the model")
        for role, array in roles.items():
            slot = layer.slots.get(role)
            if slot is None or slot.write is None:
                raise PortModelError(f"{name}.{role}: no writable parameter")
            if tuple(slot.shape) != tuple(np.shape(array)):
                raise PortModelError(f"{name}.{role}: shape {tuple(slot.shape)}, weights {tuple(np.shape(array))}")
            staged.append((slot, np.asarray(array)))
    for slot, array in staged:
        slot.write(array)
