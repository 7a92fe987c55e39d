"""A user's own MXNet Gluon block seen by the port checker (`parity --port`). See
`port_common` for the contract.

The block runs imperatively while it is examined (a hybridized block runs one
cached graph and fires no hooks); it is left so. Layers are named by their path
of child names (`features.0`, `stage1.conv1`). Parameters whose initialisation
was deferred are initialised (then overwritten by the mapped weights). A Dense
that flattens its input (`flatten=True`) sees it in C, H, W order, as the
reference does. Gluon's `BatchNorm(scale=False, center=False)` is the reference's
affine-free BatchNorm.
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from .mxnet.framework import versions  # noqa: F401 (the contract's versions())
from .port_common import PortModelError, UserLayer

_ROLES = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
          "running_mean": "running_mean", "running_var": "running_var"}


def is_model(obj) -> bool:
    return isinstance(obj, nn.Block)


def loading(dtype: str):
    return contextlib.nullcontext()


def prepare(model, dtype: str):
    if not is_model(model):
        raise PortModelError(f"the port callable must return an mxnet.gluon Block, got {type(model).__name__}")
    params = model.collect_params()
    if any(p._data is None and p._deferred_init == () for p in params.values()):
        model.initialize(mx.init.Xavier())
    model.cast(dtype)
    model.hybridize(False)
    return model


def _blocks(model) -> Dict[str, nn.Block]:
    found = {}

    def visit(block, prefix):
        found[prefix] = block
        for name, child in block._children.items():
            visit(child, f"{prefix}.{name}" if prefix else name)

    visit(model, "")
    return found


def _own(block) -> Dict[str, mx.gluon.Parameter]:
    """The block's own parameters by attribute name (weight, gamma, ...)."""
    return dict(block._reg_params)


def _roles(block) -> Dict[str, mx.gluon.Parameter]:
    """canonical role -> parameter, leaving out a BatchNorm's fixed scale / shift."""
    roles = {}
    for name, param in _own(block).items():
        if isinstance(block, nn.BatchNorm) and name in ("gamma", "beta") and param.grad_req == "null":
            continue  # scale=False / center=False: fixed at 1 / 0, not a weight
        roles[_ROLES.get(name, name)] = param
    return roles


def _activation(block) -> str:
    act = getattr(block, "act", None)
    return "linear" if act is None else act._act_type


def _describe(name: str, block) -> UserLayer:
    shapes = {role: tuple(p.shape) for role, p in _roles(block).items()}
    kind, config = "other", {}
    if isinstance(block, nn.Conv2D) and block._kwargs.get("layout", "NCHW") == "NCHW":
        k = block._kwargs
        kind = "conv"
        config = {"stride": tuple(k["stride"]), "padding": (k["pad"][0], k["pad"][0], k["pad"][1], k["pad"][1]),
                  "dilation": tuple(k["dilate"]), "groups": k["num_group"]}
    elif isinstance(block, nn.Dense):
        kind = "dense"
    elif isinstance(block, nn.BatchNorm) and block._kwargs.get("axis", 1) == 1:
        kind, config = "batchnorm", {"eps": block._kwargs["eps"]}
    if kind in ("conv", "dense") and _activation(block) != "linear":
        config["activation"] = _activation(block)
    return UserLayer(name, kind, type(block).__name__, shapes, config)


def _array(model, x: np.ndarray):
    first = next(iter(model.collect_params().values()), None)
    dtype = first.dtype if first is not None else "float32"
    return mx.nd.array(x, dtype=dtype)


def layers(model, x: np.ndarray) -> List[UserLayer]:
    order: List[str] = []  # described after the call: deferred shapes are known by then
    twice: List[str] = []
    blocks = {n: b for n, b in _blocks(model).items() if _own(b)}

    def hook_for(name):
        def hook(_block, _inputs):
            (twice if name in order else order).append(name)
        return hook

    handles = [b.register_forward_pre_hook(hook_for(n)) for n, b in blocks.items()]
    try:
        with mx.autograd.predict_mode():
            model(_array(model, x)).wait_to_read()
    finally:
        for handle in handles:
            handle.detach()
    if twice:
        raise PortModelError(f"layer(s) {sorted(set(twice))} are called more than once in one forward pass; "
                             f"shared weights cannot be mapped one-to-one onto the reference")
    return [_describe(name, blocks[name]) for name in order]


def unused(model, called: Sequence[str]) -> List[str]:
    return [n for n, b in _blocks(model).items() if _own(b) and n not in set(called)]


def set_params(model, assignment: Dict[str, Dict[str, np.ndarray]]) -> None:
    blocks = _blocks(model)
    staged = []
    for name, roles in assignment.items():
        params = _roles(blocks[name])
        for role, array in roles.items():
            param = params[role]
            if tuple(param.shape) != tuple(array.shape):
                raise PortModelError(f"{name}.{role}: shape {tuple(param.shape)}, weights {tuple(array.shape)}")
            staged.append((param, array))
    for param, array in staged:
        param.set_data(mx.nd.array(array, dtype=param.dtype))


def _numpy(value) -> np.ndarray:
    if not isinstance(value, mx.nd.NDArray):
        raise PortModelError(f"the model must return one NDArray, got {type(value).__name__}")
    return value.asnumpy()


def forward(model, x: np.ndarray, capture: Sequence[str] = ()):
    blocks = _blocks(model)
    store: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}

    def hook_for(name):
        def hook(block, inputs, output):
            given = _numpy(inputs[0])
            if isinstance(block, nn.Dense) and block._flatten and given.ndim > 2:
                given = given.reshape(given.shape[0], -1)  # Gluon's own flatten: C, H, W order
            store[name] = (given, _numpy(output))
        return hook

    handles = [blocks[n].register_forward_hook(hook_for(n)) for n in capture]
    try:
        with mx.autograd.predict_mode():
            out = _numpy(model(_array(model, x)))
    finally:
        for handle in handles:
            handle.detach()
    return out, store
