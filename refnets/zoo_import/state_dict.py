"""A torchvision state_dict read without torch or torchvision: its keys grouped by
module in order; a module with running statistics is a BatchNorm, a 4-D weight a
conv, a 2-D one a dense. Values may be torch tensors or numpy arrays."""

from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from ..native import NativeLayer, Slot
from .core import Binding, ZooMismatchError, bind_by_order

SKIPPED = ("aux1.", "aux2.")  # googlenet's auxiliary classifiers, unused in inference


def as_array(value) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _state_slot(state: Mapping, key: str) -> Slot:
    def read():
        return as_array(state[key]).copy()

    def write(array):
        if hasattr(state[key], "copy_"):  # a torch tensor: torch is installed
            from ..backends.torch.read import tensor_slot

            tensor_slot(state[key]).write(array)
        else:
            state[key] = np.asarray(array, dtype=as_array(state[key]).dtype).copy()

    return Slot(tuple(int(v) for v in np.shape(state[key])), read, write)


def bind(state: Mapping, arch, input_shape=None, **options) -> Binding:
    """The state_dict aligned by order with the spec of `arch` (which a state_dict
    alone does not tell: it must be named)."""
    from . import spec_for

    if arch is None:
        raise ValueError("a state_dict does not say which model it is: name it (arch=...)")
    spec, _ = spec_for("torchvision", arch, input_shape=input_shape, **options)
    return Binding(spec, bind_by_order(spec, layers(state)))


def layers(state: Mapping) -> List[NativeLayer]:
    groups: Dict[str, Dict[str, str]] = {}
    for key in state:
        if key.startswith(SKIPPED) or key.endswith("num_batches_tracked"):
            continue
        module, _, param = key.rpartition(".")
        groups.setdefault(module, {})[param] = key
    out = []
    for module, params in groups.items():
        slots = {p: _state_slot(state, k) for p, k in params.items()}
        if "running_mean" in params:
            kind = "batchnorm"
        elif "weight" in params and len(slots["weight"].shape) == 4:
            kind = "conv"
        elif "weight" in params and len(slots["weight"].shape) == 2:
            kind = "dense"
        else:
            raise ZooMismatchError(f"state_dict entry {module!r} ({sorted(params)}) is no conv, dense or BatchNorm")
        out.append(NativeLayer(module, kind, "state_dict", slots))
    return out
