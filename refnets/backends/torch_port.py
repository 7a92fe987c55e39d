"""A user's own PyTorch `nn.Module` seen by the port checker (`parity --port`):
its parameterised layers in execution order, canonical weights set into them, and
their inputs and outputs captured. See `port_common` for the contract."""

from __future__ import annotations

import contextlib
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .port_common import PortModelError, UserLayer
from .torch.framework import DTYPES

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def is_model(obj) -> bool:
    return isinstance(obj, nn.Module)


def loading(dtype: str):
    """The user's factory runs as it is: `prepare` casts the model afterwards."""
    return contextlib.nullcontext()


def prepare(model, dtype: str):
    if not is_model(model):
        raise PortModelError(f"the port callable must return a torch.nn.Module, got {type(model).__name__}")
    return model.to(DTYPES[dtype]).eval()


def _padding4(module: nn.Conv2d, in_hw) -> Tuple[int, int, int, int]:
    padding = module.padding
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":  # stride 1 only in torch; the extra pixel goes bottom/right
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
        return (totals[0] // 2, totals[0] - totals[0] // 2, totals[1] // 2, totals[1] - totals[1] // 2)
    return (padding[0], padding[0], padding[1], padding[1])


def _describe(name: str, module: nn.Module, in_shape) -> UserLayer:
    own = {n: tuple(p.shape) for n, p in module.named_parameters(recurse=False)}
    type_name = type(module).__name__
    if isinstance(module, nn.Conv2d):
        config = {"stride": tuple(module.stride), "padding": _padding4(module, in_shape[2:]),
                  "dilation": tuple(module.dilation), "groups": module.groups}
        if module.padding_mode != "zeros":
            config["padding_mode"] = module.padding_mode
        return UserLayer(name, "conv", type_name, own, config)
    if isinstance(module, nn.Linear):
        return UserLayer(name, "dense", type_name, own)
    if isinstance(module, _BATCHNORMS):
        stats = {n: tuple(b.shape) for n, b in module.named_buffers(recurse=False)
                 if n in ("running_mean", "running_var")}
        return UserLayer(name, "batchnorm", type_name, {**own, **stats}, {"eps": module.eps})
    return UserLayer(name, "other", type_name, own)


def _owns_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or isinstance(module, _BATCHNORMS)


def layers(model: nn.Module, x: np.ndarray) -> List[UserLayer]:
    """Every module that owns parameters, in the order the forward pass calls them."""
    found: Dict[str, UserLayer] = {}
    twice: List[str] = []

    def hook_for(name):
        def hook(module, inputs):
            if name in found:
                twice.append(name)
            else:
                found[name] = _describe(name, module, tuple(inputs[0].shape))
        return hook

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in model.named_modules() if _owns_params(m)]
    try:
        _run(model, x)
    finally:
        for handle in handles:
            handle.remove()
    if twice:
        raise PortModelError(f"layer(s) {sorted(set(twice))} are called more than once in one forward pass; "
                             f"shared weights cannot be mapped one-to-one onto the reference")
    return list(found.values())


def unused(model: nn.Module, called: Sequence[str]) -> List[str]:
    """Modules that own parameters but were not called in the forward pass."""
    return [n for n, m in model.named_modules() if _owns_params(m) and n not in set(called)]


def set_params(model: nn.Module, assignment: Dict[str, Dict[str, np.ndarray]]) -> None:
    modules = dict(model.named_modules())
    for name, roles in assignment.items():
        module = modules[name]
        for role, array in roles.items():
            tensor = getattr(module, role)
            if tuple(tensor.shape) != tuple(array.shape):
                raise PortModelError(f"{name}.{role}: shape {tuple(tensor.shape)}, weights {tuple(array.shape)}")
    with torch.no_grad():
        for name, roles in assignment.items():
            for role, array in roles.items():
                tensor = getattr(modules[name], role)
                tensor.copy_(torch.from_numpy(np.asarray(array)).to(tensor.dtype))


def _numpy(value) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise PortModelError(f"the model must return one tensor, got {type(value).__name__}")
    return value.detach().cpu().numpy().copy()


def _run(model: nn.Module, x: np.ndarray):
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x)).to(dtype))


def forward(model: nn.Module, x: np.ndarray, capture: Sequence[str] = ()):
    modules = dict(model.named_modules())
    store: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}

    def hook_for(name):
        def hook(_module, inputs, output):
            store[name] = (_numpy(inputs[0]), _numpy(output))
        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in capture]
    try:
        out = _numpy(_run(model, x))
    finally:
        for handle in handles:
            handle.remove()
    return out, store


def versions() -> Dict[str, str]:
    return {"torch": torch.__version__}
