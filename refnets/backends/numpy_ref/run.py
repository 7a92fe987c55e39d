"""Running the node tree: the forward pass (with per-node capture and, for a
backward pass, a tape of every leaf's cache) and the backward pass.

Activations are channels-first numpy arrays in the model's dtype throughout.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from ... import spec as S
from .build import Leaf, NumpyModel, Par, Seq


def check_input(model: NumpyModel, x: np.ndarray) -> np.ndarray:
    """x as a (N,) + input_shape array of the model's dtype (the model is built
    for its spec's input shape: pool divisors and windows depend on it)."""
    x = np.asarray(x)
    expected = tuple(model.spec.input_shape)
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"the numpy model {model.spec.name!r} is built for inputs of shape (N,) + {expected}, "
                         f"got {x.shape}")
    return x.astype(model.dtype, copy=False)


def check_capture(model: NumpyModel, capture: Sequence[str]) -> None:
    unknown = [p for p in capture if p not in model.infos]
    if unknown:
        raise KeyError(f"no node(s) {unknown} in the model")


def run_forward(model: NumpyModel, tree, x: np.ndarray, train: bool, capture: frozenset,
                sink: Callable[[str, np.ndarray], None], tape: Optional[dict]) -> np.ndarray:
    """The output of `tree` on x. A copy of the output of every node in `capture`
    goes to `sink(path, array)` as it is computed (a shared leaf's first call
    only: each path once); with a `tape`, every leaf's cache is kept there by path."""
    if isinstance(tree, Seq):
        y = x
        for child in tree.children:
            y = run_forward(model, child, y, train, capture, sink, tape)
    elif isinstance(tree, Par):
        outs = [run_forward(model, b, x, train, capture, sink, tape) for b in tree.branches]
        if tree.merge == "add":
            y = outs[0]
            for out in outs[1:]:
                y = y + out
        else:
            y = np.concatenate(outs, axis=1)
    else:
        y, cache = tree.forward(model.params_of(tree), x, train)
        if tape is not None:
            tape[tree.path] = cache
    if tree.path in capture:
        sink(tree.path, np.array(y, copy=True))
    return y


def run_backward(model: NumpyModel, tree, dy: np.ndarray, tape: dict, grads: Dict[str, np.ndarray]) -> np.ndarray:
    """d loss / d input of `tree` from d loss / d output, adding every
    parameter's gradient to `grads` under its canonical name."""
    if isinstance(tree, Seq):
        for child in reversed(tree.children):
            dy = run_backward(model, child, dy, tape, grads)
        return dy
    if isinstance(tree, Par):
        if tree.merge == "add":
            pieces = [dy] * len(tree.branches)
        else:  # concat: each branch gets its own channels
            bounds = np.cumsum([b.info.out_shape[0] for b in tree.branches])[:-1]
            pieces = np.split(dy, bounds, axis=1)
        dx = None
        for branch, piece in zip(tree.branches, pieces):
            d = run_backward(model, branch, piece, tape, grads)
            dx = d if dx is None else dx + d
        return dx
    assert isinstance(tree, Leaf)
    dx, leaf_grads = tree.backward(model.params_of(tree), tape[tree.path], dy)
    for role, grad in leaf_grads.items():  # a shared layer's uses add up
        name = S.join(tree.owner, role)
        grads[name] = grad if name not in grads else grads[name] + grad
    return dx


def forward(model: NumpyModel, x: np.ndarray, capture: Sequence[str] = (),
            train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """(output, {path: activation}); never changes the model."""
    store: Dict[str, np.ndarray] = {}
    out = stream(model, x, capture, store.__setitem__, train)
    return out, store


def stream(model: NumpyModel, x: np.ndarray, capture: Sequence[str], sink: Callable[[str, np.ndarray], None],
           train: bool = False) -> np.ndarray:
    """`forward`, handing each captured node to `sink` as it is computed."""
    check_capture(model, capture)
    x = check_input(model, x)
    seen = set()

    def first_call_only(path: str, array: np.ndarray) -> None:
        if path not in seen:
            seen.add(path)
            sink(path, array)

    out = run_forward(model, model.tree, x, train, frozenset(capture), first_call_only, None)
    return np.array(out, copy=True)
