"""Gradients of the loss and SGD training steps, on the numpy model.

The loss is the mean softmax cross-entropy of the logits over the batch. In
training mode the BatchNorm running statistics are updated by the spec's rule:
running = (1 - m) * running + m * batch statistic, the variance's batch
statistic multiplied by n / (n - 1) when `unbiased_running_var`.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from ... import rules
from ... import spec as S
from ..base import Gradients, heavy_ball_momentum
from . import ops
from .build import NumpyModel, walk_leaves
from .run import check_input, run_backward, run_forward


def _update_running_statistics(model: NumpyModel, tape: dict) -> None:
    """Once per application, in execution order (a shared BatchNorm twice, as
    PyTorch and Keras update it in each call)."""
    for leaf in walk_leaves(model.tree):
        node = leaf.info.applied
        if not isinstance(node, S.BatchNorm):
            continue
        mean, var, n = ops.batch_statistics(tape[leaf.path])
        if node.unbiased_running_var:
            var = var * (n / (n - 1))  # n == 1: inf, as the unbiased variance of one value
        m = node.momentum
        for role, stat in (("running_mean", mean), ("running_var", var)):
            name = S.join(leaf.owner, role)
            model.params[name] = ((1 - m) * model.params[name] + m * stat).astype(model.dtype)


def loss_and_gradients(model: NumpyModel, x: np.ndarray, labels: np.ndarray,
                       train: bool) -> Tuple[float, np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """(loss, logits, d loss / d x, {canonical name: d loss / d param}) of one
    forward and backward pass; in training mode also the running-statistics update."""
    x = check_input(model, x)
    tape: dict = {}
    logits = run_forward(model, model.tree, x, train, frozenset(), None, tape)  # nothing captured: no sink
    loss, dlogits = ops.cross_entropy(logits, labels)
    grads: Dict[str, np.ndarray] = {}
    dx = run_backward(model, model.tree, dlogits, tape, grads)
    if train:
        _update_running_statistics(model, tape)
    return loss, logits, dx, grads


def gradients(model: NumpyModel, x: np.ndarray, labels: np.ndarray, train: bool = False) -> Gradients:
    loss, logits, dx, grads = loss_and_gradients(model, x, labels, train)
    trainable = [name for name in model.params if not name.endswith(rules.BN_STATISTICS)]
    params = {name: np.array(grads[name], dtype=model.dtype) for name in trainable}
    return Gradients(loss, np.array(logits, copy=True), np.array(dx, dtype=model.dtype), params)


class Trainer:
    """SGD ("sgd") or heavy-ball momentum ("momentum", PyTorch's form:
    v <- mu*v + g, w <- w - lr*v, v starting at 0) on the mean cross-entropy,
    the model in training mode."""

    def __init__(self, model: NumpyModel, optimizer: str, lr: float, momentum: float = 0.0):
        self.model = model
        self.lr = lr
        self.mu = heavy_ball_momentum(optimizer, momentum)
        self.velocity: Dict[str, np.ndarray] = {}

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        """One optimiser step on the batch; the loss before the step."""
        loss, _, _, grads = loss_and_gradients(self.model, x, labels, train=True)
        dtype = self.model.dtype
        for name, grad in grads.items():
            v = self.mu * self.velocity.get(name, np.zeros_like(grad)) + grad
            self.velocity[name] = v.astype(dtype)
            step = dtype.type(self.lr) * self.velocity[name]
            self.model.params[name] = (self.model.params[name] - step).astype(dtype)
        return loss
