"""Forward with per-node capture of a built Gluon model, without autograd recording."""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from .framework import CONTEXT, autograd, mx, nn
from .weights import dtype_of


def blocks_at(model: nn.HybridBlock, paths: Sequence[str]) -> Dict[str, nn.HybridBlock]:
    """The block of every spec path; KeyError naming the paths the spec lacks."""
    known = {path for path, _ in model.refnets_spec.walk()}
    unknown = [p for p in paths if p not in known]
    if unknown:
        raise KeyError(f"no node(s) {unknown} in the model")
    blocks = {}
    for path in paths:
        block = model
        for segment in path.split(".") if path else ():
            block = block._children[segment]
        blocks[path] = block
    return blocks


def _forward_capturing(model: nn.HybridBlock, x: mx.nd.NDArray, capture: Sequence[str]):
    """A hybridized block runs one cached graph and fires no child hooks, so the
    model runs imperatively (the same operators) with forward hooks, and is
    hybridized again afterwards."""
    blocks = blocks_at(model, capture)
    store: Dict[str, object] = {}  # NDArrays, then their numpy copies

    def hook_for(path):
        def hook(_block, _inputs, output):
            if path not in store:  # a shared block runs again later: keep its own (first) call
                store[path] = output
        return hook

    handles = [blocks[p].register_forward_hook(hook_for(p)) for p in capture]
    model.hybridize(False)
    try:
        out = model(x)
    finally:
        for handle in handles:
            handle.detach()
        model.hybridize()
    # Read back once the whole forward is queued (an `asnumpy` in each hook would
    # wait for every operator in turn); each NDArray is dropped as it is copied,
    # and one that several paths share (a Sequential and its last child) is copied once.
    copies: Dict[int, np.ndarray] = {}
    for path in list(store):
        array = store[path]
        if id(array) not in copies:  # every NDArray not yet copied is still alive: ids do not repeat
            copies[id(array)] = array.asnumpy()
        store[path] = copies[id(array)]
    return out, store


def as_array(model: nn.HybridBlock, x: np.ndarray) -> mx.nd.NDArray:
    return mx.nd.array(np.ascontiguousarray(x), ctx=CONTEXT, dtype=dtype_of(model))


def forward(model: nn.HybridBlock, x: np.ndarray, capture: Sequence[str] = (),
            train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Forward of a channels-first batch without autograd recording, in
    inference mode (BatchNorm on running statistics, dropout off) or (`train`)
    training mode (BatchNorm on batch statistics; without a backward pass Gluon
    leaves the running statistics as they were); optionally the outputs of the
    spec nodes named in `capture`."""
    data = as_array(model, x)
    capture = list(capture)
    with autograd.pause(train_mode=train):
        if capture:
            out, store = _forward_capturing(model, data, capture)
        else:
            out, store = model(data), {}
    return out.asnumpy(), store
