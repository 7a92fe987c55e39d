"""Forward with per-node capture (compiled plain forward, eager capturing forward),
gradients and training steps of a built Keras model; channels-first numpy in and out."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from ... import shapes
from ..base import Gradients, heavy_ball_momentum
from .build import Bindings, bindings_of
from .framework import keras, ops, tf
from .weights import parameter_slots, to_canonical


def _runner(model: keras.Model, capture: Tuple[str, ...], train: bool = False):
    """(function NHWC -> tuple of tensors, index of each requested path in that
    tuple); the model output is path "". Compiled (`tf.function`) for the plain
    forward; eager for a capturing one, which parity runs once per model: tracing
    a graph with every node's output as an output took longer than the forward
    (ResNet50V2: 2.4 CPU s traced against 1.4 eager). Cached per capture set and
    mode. Paths sharing a tensor (a Sequential and its last child) share an output."""
    bindings = bindings_of(model)
    key = ("",) + capture
    if (train, key) not in bindings.runners:
        tensors, index = [], {}
        for path in key:
            tensor = bindings.tensors[path]
            position = next((i for i, t in enumerate(tensors) if t is tensor), None)
            if position is None:
                position = len(tensors)
                tensors.append(tensor)
            index[path] = position
        net = keras.Model(model.inputs, tensors, name=f"{model.name}_capture") if len(key) > 1 else model

        def run(x):
            outs = net(x, training=train)
            return tuple(outs) if isinstance(outs, (list, tuple)) else (outs,)

        if not capture:  # a capturing forward runs eagerly: tracing every node's output costs more than it saves
            signature = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), bindings.dtype)
            run = tf.function(run, input_signature=[signature])
        bindings.runners[(train, key)] = (run, index)
    return bindings.runners[(train, key)]


def _channels_first(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(array, (0, 3, 1, 2))) if array.ndim == 4 else array


def _nhwc_batch(bindings: Bindings, x: np.ndarray) -> tf.Tensor:
    """A channels-first batch as the model's NHWC input; ValueError if its shape
    is not the one the model was built for."""
    x = np.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(bindings.spec.input_shape):
        c, h, w = bindings.spec.input_shape
        raise ValueError(f"{bindings.spec.name} was built for batches of shape (N, {c}, {h}, {w}), got {x.shape}")
    return tf.constant(np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=bindings.dtype))


def _moving_statistics(model: keras.Model) -> List[keras.Variable]:
    return [var for name, (var, _) in parameter_slots(model).items() if name.rsplit(".", 1)[-1] in shapes.BN_STATISTICS]


def forward(model: keras.Model, x: np.ndarray, capture: Sequence[str] = (),
            train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Forward of a channels-first batch, in inference mode or (`train`) in
    training mode (BatchNorm on batch statistics; the moving statistics are
    restored afterwards, so the model is unchanged); optionally the outputs of
    the spec nodes named in `capture` (channels-first). The plain forward runs a
    compiled function cached per mode (the first call traces it); a capturing
    forward runs eagerly."""
    bindings = bindings_of(model)
    capture = tuple(dict.fromkeys(capture))
    unknown = [p for p in capture if p not in bindings.tensors]
    if unknown:
        raise KeyError(f"no node(s) {unknown} in the model")
    batch = _nhwc_batch(bindings, x)
    run, index = _runner(model, capture, train)
    statistics = _moving_statistics(model) if train else []
    saved = [ops.convert_to_numpy(var) for var in statistics]
    try:
        outs = run(batch)
    finally:
        for var, value in zip(statistics, saved):
            var.assign(value)
    arrays = [out.numpy() for out in outs]
    # The captures are channels-first views of the NHWC arrays, not copies: a
    # transposing copy of every node's output cost as much as the capturing
    # forward itself, and paths sharing a tensor (a Sequential and its last
    # child) share one array. Nothing writes to them.
    return _channels_first(arrays[index[""]]), {path: _channels_first_view(arrays[index[path]]) for path in capture}


def _channels_first_view(array: np.ndarray) -> np.ndarray:
    return np.transpose(array, (0, 3, 1, 2)) if array.ndim == 4 else array


def _trainable_slots(model: keras.Model) -> Dict[str, Tuple[keras.Variable, str]]:
    return {name: slot for name, slot in parameter_slots(model).items()
            if name.rsplit(".", 1)[-1] not in shapes.BN_STATISTICS}


def _loss(model: keras.Model, batch: tf.Tensor, labels: np.ndarray, train: bool):
    """(loss, logits): TensorFlow's sparse softmax cross-entropy of the model's
    output, mean over the batch. Not Keras's loss function: given the output of a
    softmax (a model ending in `Activation(kind="softmax")`) it would take the
    softmax's input as the logits instead, and compute another loss."""
    logits = model(batch, training=train)
    per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.constant(np.asarray(labels, dtype=np.int64)), logits=logits)
    return ops.mean(per_sample), logits


def gradients(model: keras.Model, x: np.ndarray, labels: np.ndarray, train: bool = False) -> Gradients:
    """Loss, logits and the gradients of the mean cross-entropy with respect to
    the input (returned channels-first) and every parameter (in the canonical
    layout, converted as the weights are). `train`: training mode, which
    updates the moving statistics as a training step does."""
    bindings = bindings_of(model)
    batch = _nhwc_batch(bindings, x)
    slots = _trainable_slots(model)
    with tf.GradientTape() as tape:
        tape.watch(batch)
        loss, logits = _loss(model, batch, labels, train)
    grads = tape.gradient(loss, [batch] + [var for var, _ in slots.values()])
    params = {name: to_canonical(np.zeros(var.shape, bindings.dtype) if grad is None else grad.numpy(), layout)
              for (name, (var, layout)), grad in zip(slots.items(), grads[1:])}
    return Gradients(float(loss), ops.convert_to_numpy(logits), _channels_first(grads[0].numpy()), params)


class Trainer:
    """Training steps with keras.optimizers.SGD ("sgd", or "momentum": heavy
    ball; no Nesterov, no weight decay) on the mean cross-entropy, the model in
    training mode.

    Keras would round both hyperparameters to float32 for a float64 model: it
    holds the learning rate in a float32 variable, and its update casts a Python
    float momentum through a float32 tensor. So the learning rate is a callable
    returning a float64 tensor and the momentum a float64 tensor; `update_step`
    casts both to each variable's dtype (float32 models round them as before)."""

    def __init__(self, model: keras.Model, optimizer: str, lr: float, momentum: float = 0.0):
        self.model = model
        rate = tf.constant(float(lr), tf.float64)
        coefficient = heavy_ball_momentum(optimizer, momentum)
        self.optimizer = keras.optimizers.SGD(learning_rate=lambda: rate, momentum=coefficient)
        if coefficient:
            self.optimizer.momentum = tf.constant(coefficient, tf.float64)

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        """One optimiser step on the batch; the loss before the step."""
        batch = _nhwc_batch(bindings_of(self.model), x)
        variables = [var for var, _ in _trainable_slots(self.model).values()]
        with tf.GradientTape() as tape:
            loss, _ = _loss(self.model, batch, labels, train=True)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return float(loss)


def count_params(model: keras.Model) -> Tuple[int, int]:
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    return trainable, int(model.count_params())
