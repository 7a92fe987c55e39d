"""Forward of a built Gluon model without autograd recording, with per-node capture
handed to a sink while it runs (`stream`) or collected (`forward`)."""

from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Dict, List, Sequence, Tuple

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


WINDOW_BYTES = 32 << 20
"""Bytes of captured NDArrays a stream holds in flight. Gluon's imperative calls
only queue operators on MXNet's engine threads; an `asnumpy` in each node's own
hook would make the forward wait for every operator in turn. Reading back only
the oldest captures beyond this many bytes lets Python queue ahead while the
engine computes and the sink runs; a sink that blocks stops the queueing, so
the forward holds at most this much (and one NDArray) of captures beyond what it
needs itself. Bytes rather than a count, so the bound does not grow with the
batch (README, mxnet backend, for the measurements that chose it)."""


class _Window:
    """Captured NDArrays waiting to be read back, oldest first: each is copied to
    numpy (a fresh array nothing writes to) and handed to the sink once more than
    `limit` bytes wait, and all at `drain`. An NDArray that several waiting paths
    share (a Sequential and its last child) is counted and copied once."""

    def __init__(self, sink: Callable[[str, np.ndarray], None], limit: int):
        self._sink, self._limit, self._bytes = sink, limit, 0
        self._pending: Deque[List] = deque()  # [path, NDArray, numpy copy or None]

    def add(self, path: str, array: mx.nd.NDArray) -> None:
        if not any(entry[1] is array for entry in self._pending):
            self._bytes += _nbytes(array)
        self._pending.append([path, array, None])
        while self._bytes > self._limit:
            self._emit()

    def drain(self) -> None:
        while self._pending:
            self._emit()

    def _emit(self) -> None:
        path, array, copy = self._pending.popleft()
        if copy is None:
            copy = array.asnumpy()
            shared = [entry for entry in self._pending if entry[1] is array]
            for entry in shared:
                entry[2] = copy
            if not shared:
                self._bytes -= _nbytes(array)
        self._sink(path, copy)


def _nbytes(array: mx.nd.NDArray) -> int:
    return int(np.prod(array.shape)) * np.dtype(array.dtype).itemsize


def _stream_capturing(model: nn.HybridBlock, x: mx.nd.NDArray, capture: Sequence[str], window: _Window):
    """A hybridized block runs one cached graph and fires no child hooks, so the
    model runs imperatively (the same operators) with forward hooks, and is
    hybridized again afterwards."""
    blocks = blocks_at(model, capture)
    seen = set()

    def hook_for(path):
        def hook(_block, _inputs, output):
            if path not in seen:  # a shared block runs again later: keep its own (first) call
                seen.add(path)
                window.add(path, output)
        return hook

    handles = [blocks[p].register_forward_hook(hook_for(p)) for p in capture]
    model.hybridize(False)
    try:
        out = model(x)
    finally:
        for handle in handles:
            handle.detach()
        model.hybridize()
    window.drain()
    return out


def as_array(model: nn.HybridBlock, x: np.ndarray) -> mx.nd.NDArray:
    return mx.nd.array(np.ascontiguousarray(x), ctx=CONTEXT, dtype=dtype_of(model))


def forward(model: nn.HybridBlock, x: np.ndarray, capture: Sequence[str] = (),
            train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Forward of a channels-first batch without autograd recording, in
    inference mode (BatchNorm on running statistics, dropout off) or (`train`)
    training mode (BatchNorm on batch statistics; without a backward pass Gluon
    leaves the running statistics as they were); optionally the outputs of the
    spec nodes named in `capture`."""
    store: Dict[str, np.ndarray] = {}
    out = stream(model, x, capture, store.__setitem__, train)
    return out, store


def stream(model: nn.HybridBlock, x: np.ndarray, capture: Sequence[str], sink: Callable[[str, np.ndarray], None],
           train: bool = False) -> np.ndarray:
    """`forward`, handing each node in `capture` to `sink` in execution order
    while the forward runs, at most `WINDOW_BYTES` of captures behind it."""
    data = as_array(model, x)
    capture = list(dict.fromkeys(capture))
    with autograd.pause(train_mode=train):
        if capture:
            out = _stream_capturing(model, data, capture, _Window(sink, WINDOW_BYTES))
        else:
            out = model(data)
    return out.asnumpy()
