"""A torchvision state_dict read without torch or torchvision: its keys grouped by
module in order; a module with running statistics is a BatchNorm, a 4-D weight a
conv, a 2-D one a dense. Values may be torch tensors or numpy arrays."""

from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from ..native import NativeLayer, Slot
from .core import ZooMismatchError

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
