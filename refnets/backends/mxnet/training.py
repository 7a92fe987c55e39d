"""Gradients and training steps of a built Gluon model.

BatchNorm's running statistics: Gluon's operator updates them in its *backward*
pass (a training-mode forward alone changes nothing), with the biased batch
variance and its momentum held as a C float (float32, even for a float64
model). Neither can be configured, so the training step (`gradients(train=True)`,
`Trainer.step`) reads the batch statistics from the operator and applies the
spec's update itself (`_SpecRunningStatistics`), with Gluon's momentum
convention (`build.gluon_momentum`: 1 - spec momentum) in float64. A hand-written
Gluon training loop gets Gluon's own update."""

from __future__ import annotations

import numpy as np

from ... import shapes
from ... import spec as S
from ..base import Gradients, heavy_ball_momentum
from .framework import CONTEXT, autograd, gluon, mx, nn
from .run import as_array, blocks_at
from .weights import params_of, with_gradients


class _SpecRunningStatistics:
    """Around one training step (forward and backward) of `model` on a batch of
    `batch` samples: the spec's update of every BatchNorm's running statistics
    in place of Gluon's.

    Before the step the running statistics are saved and zeroed; the operator's
    backward then leaves g * 0 + (1 - g) * s = (1 - g) * s in them, where s is
    the batch mean or biased variance and g its momentum as a float32 (both
    computed in float32, as the operator does), so s is read back to within half
    an ulp of the model's dtype. Then, in float64, with g the block's momentum
    (Gluon's convention, `gluon_momentum`):
        running = g * old + (1 - g) * s,  s of the variance * n / (n - 1) if unbiased,
    n = batch * H * W values per channel. If the step fails, the old statistics are restored."""

    def __init__(self, model: nn.HybridBlock, batch: int):
        infos = shapes.infer(model.refnets_spec)
        shared = [p for p, info in infos.items() if info.target is not None and isinstance(info.applied, S.BatchNorm)]
        if shared:  # the operator's backward mixes both uses' statistics in one update
            raise ValueError(f"the mxnet backend cannot train a BatchNorm applied twice (shared at {shared}): "
                             f"its running statistics could not follow the spec's rule")
        paths = [p for p, node in model.refnets_spec.walk() if isinstance(node, S.BatchNorm)]
        self._layers = []
        for path, block in blocks_at(model, paths).items():
            info = infos[path]
            count = batch * int(np.prod(info.in_shape[1:]))
            correction = count / (count - 1.0) if info.node.unbiased_running_var else 1.0
            self._layers.append((block, float(block._kwargs["momentum"]), correction))

    def __enter__(self):
        self._saved = []
        for block, _, _ in self._layers:
            old = (block.running_mean.data().asnumpy(), block.running_var.data().asnumpy())
            self._saved.append(old)
            for param in (block.running_mean, block.running_var):
                param.data()[:] = 0
        return self

    def __exit__(self, error_type, _error, _traceback):
        for (block, momentum, correction), old in zip(self._layers, self._saved):
            new = old if error_type is not None else self._spec_update(block, momentum, correction, old)
            for param, value in zip((block.running_mean, block.running_var), new):
                param.set_data(mx.nd.array(value, ctx=CONTEXT, dtype=param.dtype))
        return False

    @staticmethod
    def _spec_update(block, momentum: float, correction: float, old):
        """(running_mean, running_var) by the spec's rule from the batch statistics
        the operator left in the zeroed statistics."""
        weight = np.float32(1.0) - np.float32(momentum)  # what the operator multiplied the batch statistic by
        if not weight:  # momentum 1 (spec momentum 0): the statistics never move
            return old
        mean, var = (p.data().asnumpy().astype(np.float64) / np.float64(weight)
                     for p in (block.running_mean, block.running_var))
        return (momentum * old[0] + (1.0 - momentum) * mean,
                momentum * old[1] + (1.0 - momentum) * var * correction)


class _UnchangedRunningStatistics:
    """Around an inference-mode backward: restores the running statistics after
    it. MXNet's BatchNorm backward rewrites them even outside training mode (a
    measured change of one ulp in a float64 BatchNorm over (N, C) inputs)."""

    def __init__(self, model: nn.HybridBlock):
        self._params = [p for name, p in params_of(model).items() if name.rsplit(".", 1)[-1] in shapes.BN_STATISTICS]

    def __enter__(self):
        self._saved = [p.data().copy() for p in self._params]
        return self

    def __exit__(self, *_error):
        for param, value in zip(self._params, self._saved):
            param.set_data(value)
        return False


_LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def _backward(model: nn.HybridBlock, x: np.ndarray, labels: np.ndarray, train: bool, data=None):
    """Forward and backward of the mean cross-entropy (Gluon's softmax
    cross-entropy, averaged over the batch); in training mode the running
    statistics get the spec's update. (loss, logits) as NDArrays."""
    data = as_array(model, x) if data is None else data
    label = mx.nd.array(np.asarray(labels), ctx=CONTEXT, dtype=data.dtype)
    with _SpecRunningStatistics(model, len(x)) if train else _UnchangedRunningStatistics(model):
        with autograd.record(train_mode=train):
            logits = model(data)
            loss = _LOSS(logits, label).mean()
        loss.backward()
        mx.nd.waitall()  # the operator writes the statistics asynchronously
    return loss, logits


def gradients(model: nn.HybridBlock, x: np.ndarray, labels: np.ndarray, train: bool = False) -> Gradients:
    """Loss, logits and the gradients of the mean cross-entropy with respect to
    the input and every parameter. `train`: training mode, which updates the
    BatchNorm running statistics by the spec's rule, as a training step does."""
    trainable = with_gradients(model)
    data = as_array(model, x)
    data.attach_grad()
    loss, logits = _backward(model, x, labels, train, data)
    params = {name: p.grad().asnumpy() for name, p in trainable.items()}
    return Gradients(float(loss.asscalar()), logits.asnumpy(), data.grad.asnumpy(), params)


class Trainer:
    """Training steps with Gluon's Trainer and its "sgd" optimiser (plain, or
    "momentum": heavy ball; no weight decay) on the mean cross-entropy, the
    model in training mode. The loss is already a mean, so the step's batch
    size is 1 (Gluon would divide the gradients by it). MXNet's optimiser
    operators hold the learning rate and momentum as float32, also for a float64
    model."""

    def __init__(self, model: nn.HybridBlock, optimizer: str, lr: float, momentum: float = 0.0):
        self.model = model
        settings = {"learning_rate": float(lr), "momentum": heavy_ball_momentum(optimizer, momentum), "wd": 0.0}
        self.trainer = gluon.Trainer(list(with_gradients(model).values()), "sgd", settings, kvstore=None)

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        """One optimiser step on the batch; the loss before the step."""
        loss, _ = _backward(self.model, x, labels, train=True)
        self.trainer.step(1)
        mx.nd.waitall()
        return float(loss.asscalar())
