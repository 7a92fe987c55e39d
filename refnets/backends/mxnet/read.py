"""The reader of a native MXNet Gluon block (a user's port, a Gluon model-zoo model):
its parameterised layers with their configuration, canonical weights read and
written through slots, and the one capture of their inputs and outputs.

The block runs imperatively while it is captured (a hybridized block runs one
cached graph and fires no hooks), then is hybridized again if it was. Layers are
named by their path of child names (`features.0`, `stage1.conv1`), which in every
zoo model is also the order they run in; Gluon's global name prefixes are never
used. Gluon already uses the canonical layouts (OIHW kernels, (out, in) dense
weights; a Dense that flattens its input (`flatten=True`) sees it in C, H, W
order); BatchNorm's gamma and beta are the canonical weight and bias. An
affine-free BatchNorm (`scale=False, center=False`) still holds a gamma (ignored
by the operator: fix_gamma) and a beta (used, so it must be zero); neither is a
canonical weight. Graph inputs (`NativeLayer.inputs`) are not read for Gluon yet.
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ... import native
from ...native import NativeLayer, PortModelError, Slot
from .framework import CONTEXT, mx, nn
from .framework import versions as versions  # noqa: PLC0414 (the reader contract's versions())


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


def block_paths(model) -> Dict[str, nn.Block]:
    """Every block of the model by its path of child names ("" for the model itself)."""
    found = {}

    def visit(block, prefix):
        found[prefix] = block
        for name, child in block._children.items():
            visit(child, f"{prefix}.{name}" if prefix else name)

    visit(model, "")
    return found


def own_params(block) -> Dict[str, mx.gluon.Parameter]:
    """The block's own parameters by attribute name (weight, gamma, ...)."""
    return dict(block._reg_params)


def param_slot(param) -> Slot:
    def read():
        return param.data().asnumpy()

    def write(array):
        param.set_data(mx.nd.array(np.asarray(array, dtype=param.dtype), ctx=CONTEXT, dtype=param.dtype))

    return Slot(tuple(int(v) for v in param.shape), read, write)


def _activation(block) -> str:
    act = getattr(block, "act", None)
    return "linear" if act is None else act._act_type


def batchnorm_affine(scale: bool, center: bool, beta: np.ndarray):
    """True (scale and shift), False (neither: fix_gamma and a zero beta that is not
    trained) or, for anything in between, a description of it."""
    if scale and center:
        return True
    if not (scale or center) and not np.any(beta):
        return False
    return f"scale={scale}, center={center}" + ("" if center else ", with a non-zero beta")


def _batchnorm(name: str, block) -> NativeLayer:
    scale = not block._kwargs["fix_gamma"]
    center = bool(block.beta._differentiable)
    affine = batchnorm_affine(scale, center, block.beta.data().asnumpy())
    slots = {}
    if scale:
        slots["weight"] = param_slot(block.gamma)
    if center:
        slots["bias"] = param_slot(block.beta)
    slots["running_mean"] = param_slot(block.running_mean)
    slots["running_var"] = param_slot(block.running_var)
    config = {"eps": float(block._kwargs["eps"]), "affine": affine, "axis": block._kwargs.get("axis", 1)}
    return NativeLayer(name, "batchnorm", type(block).__name__, slots, config, handle=block)


def describe(name: str, block) -> NativeLayer:
    type_name = type(block).__name__
    if isinstance(block, nn.BatchNorm) and block._kwargs.get("axis", 1) == 1:
        return _batchnorm(name, block)
    config: Dict[str, object] = {}
    if isinstance(block, nn.Conv2D) and block._kwargs.get("layout", "NCHW") == "NCHW":
        k = block._kwargs
        kind = "conv"
        config = {"stride": tuple(k["stride"]), "padding": (k["pad"][0], k["pad"][0], k["pad"][1], k["pad"][1]),
                  "dilation": tuple(k["dilate"]), "groups": k["num_group"]}
    elif isinstance(block, nn.Dense):
        kind = "dense"
    else:
        return NativeLayer(name, "other", type_name, handle=block,
                           other_params={n: tuple(p.shape) for n, p in own_params(block).items()})
    if _activation(block) != "linear":
        config["activation"] = _activation(block)
    slots = {role: param_slot(p) for role, p in (("weight", block.weight), ("bias", getattr(block, "bias", None)))
             if p is not None}
    return NativeLayer(name, kind, type_name, slots, config, handle=block)


def input_array(model, x: np.ndarray):
    """`x` as an NDArray of the dtype of the model's parameters."""
    first = next(iter(model.collect_params().values()), None)
    dtype = first.dtype if first is not None else "float32"
    return mx.nd.array(x, dtype=dtype)


def layers(model, x: Optional[np.ndarray] = None) -> List[NativeLayer]:
    """Every block that owns parameters: in registration order (the child paths),
    or (given an input) in the order the forward pass calls them, refusing a
    block called twice."""
    blocks = {n: b for n, b in block_paths(model).items() if own_params(b)}
    if x is None:
        return [describe(name, block) for name, block in blocks.items()]
    order: List[str] = []  # described after the call: deferred shapes are known by then
    twice: List[str] = []

    def hook_for(name):
        def hook(_block, _inputs):
            (twice if name in order else order).append(name)
        return hook

    with _imperative(model):
        handles = [b.register_forward_pre_hook(hook_for(n)) for n, b in blocks.items()]
        try:
            with mx.autograd.predict_mode():
                model(input_array(model, x)).wait_to_read()
        finally:
            for handle in handles:
                handle.detach()
    if twice:
        raise PortModelError(f"layer(s) {sorted(set(twice))} are called more than once in one forward pass; "
                             f"shared weights cannot be mapped one-to-one onto the reference")
    return [describe(name, blocks[name]) for name in order]


@contextlib.contextmanager
def _imperative(model):
    """The block run imperatively (hooks fire), hybridized again afterwards if it was."""
    active = bool(getattr(model, "_active", False))
    if active:
        model.hybridize(False)
    try:
        yield
    finally:
        if active:
            model.hybridize()


def unused(model, called: Sequence[str]) -> List[str]:
    return [n for n, b in block_paths(model).items() if own_params(b) and n not in set(called)]


def set_params(model, assignment: Dict[str, Dict[str, np.ndarray]]) -> None:
    blocks = block_paths(model)
    native.assign({name: describe(name, blocks[name]) for name in assignment}, assignment)


def _numpy(value) -> np.ndarray:
    if not isinstance(value, mx.nd.NDArray):
        raise PortModelError(f"the model must return one NDArray, got {type(value).__name__}")
    return value.asnumpy()


def forward(model, x: np.ndarray, capture: Sequence[str] = ()):
    blocks = block_paths(model)
    store: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}

    def hook_for(name):
        def hook(block, inputs, output):
            given = _numpy(inputs[0])
            if isinstance(block, nn.Dense) and block._flatten and given.ndim > 2:
                given = given.reshape(given.shape[0], -1)  # Gluon's own flatten: C, H, W order
            store[name] = (given, _numpy(output))
        return hook

    with _imperative(model):  # the hooks are gone before it is hybridized again
        handles = [blocks[n].register_forward_hook(hook_for(n)) for n in capture]
        try:
            with mx.autograd.predict_mode():
                out = _numpy(model(input_array(model, x)))
        finally:
            for handle in handles:
                handle.detach()
    return out, store
