"""The reader of a native PyTorch `nn.Module` (a user's port, a torchvision model):
its parameterised layers with their configuration and graph inputs, canonical
weights read and written through slots, and the one capture of their inputs and
outputs. Layers are named by their module path; layouts are already canonical
(OIHW, (out, in))."""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ... import native
from ...native import NativeLayer, PortModelError, Slot
from .framework import DTYPES, nn
from .framework import versions as versions  # noqa: PLC0414 (the reader contract's versions())

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def is_model(obj) -> bool:
    return isinstance(obj, nn.Module)


def loading(dtype: str):
    """The user's factory runs as it is: `prepare` casts the model afterwards."""
    return contextlib.nullcontext()


def prepare(model, dtype: str):
    if not is_model(model):
        raise PortModelError(f"the port callable must return a torch.nn.Module, got {type(model).__name__}")
    return model.to(DTYPES[dtype]).eval()


def _padding4(module: nn.Conv2d) -> Tuple[int, int, int, int]:
    padding = module.padding
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":  # stride 1 only in torch; the extra pixel goes bottom/right
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
        return (totals[0] // 2, totals[0] - totals[0] // 2, totals[1] // 2, totals[1] - totals[1] // 2)
    return (padding[0], padding[0], padding[1], padding[1])


def tensor_slot(tensor) -> Slot:
    def read():
        return tensor.detach().cpu().numpy().copy()

    def write(array):
        with torch.no_grad():
            tensor.copy_(torch.from_numpy(np.asarray(array)).to(tensor.dtype))

    return Slot(tuple(int(v) for v in tensor.shape), read, write)


def _slots(module: nn.Module, roles: Sequence[str]) -> Dict[str, Slot]:
    return {role: tensor_slot(getattr(module, role)) for role in roles if getattr(module, role, None) is not None}


def describe(name: str, module: nn.Module) -> NativeLayer:
    type_name = type(module).__name__
    if isinstance(module, nn.Conv2d):
        config = {"stride": tuple(module.stride), "padding": _padding4(module), "dilation": tuple(module.dilation),
                  "groups": module.groups}
        if module.padding_mode != "zeros":
            config["padding_mode"] = module.padding_mode
        return NativeLayer(name, "conv", type_name, _slots(module, ("weight", "bias")), config, handle=module)
    if isinstance(module, nn.Linear):
        return NativeLayer(name, "dense", type_name, _slots(module, ("weight", "bias")), handle=module)
    if isinstance(module, BATCHNORMS):
        slots = _slots(module, ("weight", "bias", "running_mean", "running_var"))
        config = {"eps": module.eps, "affine": bool(module.affine), "tracks": module.track_running_stats}
        return NativeLayer(name, "batchnorm", type_name, slots, config, handle=module)
    own = {n: tuple(p.shape) for n, p in module.named_parameters(recurse=False)}
    return NativeLayer(name, "other", type_name, handle=module, other_params=own)


def owns_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or isinstance(module, BATCHNORMS)


def _graph_inputs(model: nn.Module, names: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    """Module path -> the parameterised modules (or "<input>") feeding it, from
    torch.fx's graph of the model, followed through parameter-free operations;
    {} when the model cannot be traced symbolically."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # data-dependent control flow, modules made in forward, ...: no graph
        return {}
    wanted, producers = set(names), {}
    for node in graph.nodes:
        sources = set()
        for arg in node.all_input_nodes:
            sources |= {arg.target} if arg.op == "call_module" and arg.target in wanted else producers.get(arg, set())
        if node.op == "placeholder":
            sources = {"<input>"}
        producers[node] = sources
        if node.op == "call_module" and node.target in wanted:
            producers[(node.target, "in")] = sources
    return {name: tuple(sorted(producers[(name, "in")])) for name in names if (name, "in") in producers}


def layers(model: nn.Module, x: Optional[np.ndarray] = None) -> List[NativeLayer]:
    """Every module that owns parameters: in registration order, or (given an
    input) in the order the forward pass calls them, refusing a module called
    twice (its weights cannot map one-to-one)."""
    modules = {n: m for n, m in model.named_modules() if owns_params(m)}
    order = list(modules) if x is None else _execution_order(model, modules, x)
    inputs = _graph_inputs(model, order)
    found = [describe(name, modules[name]) for name in order]
    for layer in found:
        layer.inputs = inputs.get(layer.name)
    return found


def _execution_order(model: nn.Module, modules: Dict[str, nn.Module], x: np.ndarray) -> List[str]:
    order: List[str] = []
    twice: List[str] = []

    def hook_for(name):
        def hook(_module, _inputs):
            (twice if name in order else order).append(name)
        return hook

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in modules.items()]
    try:
        _run(model, x)
    finally:
        for handle in handles:
            handle.remove()
    if twice:
        raise PortModelError(f"layer(s) {sorted(set(twice))} are called more than once in one forward pass; "
                             f"shared weights cannot be mapped one-to-one onto the reference")
    return order


def unused(model: nn.Module, called: Sequence[str]) -> List[str]:
    """Modules that own parameters but were not called in the forward pass."""
    return [n for n, m in model.named_modules() if owns_params(m) and n not in set(called)]


def set_params(model: nn.Module, assignment: Dict[str, Dict[str, np.ndarray]]) -> None:
    modules = dict(model.named_modules())
    native.assign({name: describe(name, modules[name]) for name in assignment}, assignment)


def _numpy(value) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise PortModelError(f"the model must return one tensor, got {type(value).__name__}")
    return value.detach().cpu().numpy().copy()


def _run(model: nn.Module, x: np.ndarray):
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    model.eval()
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x)).to(dtype))


def forward(model: nn.Module, x: np.ndarray, capture: Sequence[str] = ()):
    """Inference-mode output and, per captured module path, its (input, output), channels-first."""
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
