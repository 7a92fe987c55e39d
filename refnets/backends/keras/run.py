"""Forward with per-node capture, streaming forward, gradients and training steps
of a built Keras model; channels-first numpy in and out. Capturing and streaming
forwards, and a model's first plain forward, run eagerly over the spec
(`execute`); later plain forwards a compiled `tf.function`."""

from __future__ import annotations

import weakref
from typing import Callable, Dict, List, Sequence, Tuple, TypeVar

import numpy as np

from ... import shapes
from ..base import Gradients, heavy_ball_momentum
from . import execute
from .build import Bindings, bindings_of
from .framework import keras, ops, tf
from .weights import parameter_slots, to_canonical

T = TypeVar("T")


def _compiled(model: keras.Model, train: bool):
    """The plain forward as a `tf.function` (NHWC -> NHWC), one per mode, cached
    on the model; its first call traces it."""
    bindings = bindings_of(model)
    if train not in bindings.compiled:
        signature = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), bindings.dtype)
        bindings.compiled[train] = tf.function(lambda x: model(x, training=train), input_signature=[signature])
    return bindings.compiled[train]


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


def _restoring_statistics(model: keras.Model, train: bool, call: Callable[[], T]) -> T:
    """`call()`, the model's moving statistics as they were afterwards when
    `train` (a training-mode call updates them; `forward` must not)."""
    statistics = _moving_statistics(model) if train else []
    saved = [ops.convert_to_numpy(var) for var in statistics]
    try:
        return call()
    finally:
        for var, value in zip(statistics, saved):
            var.assign(value)


def _checked_capture(bindings: Bindings, capture: Sequence[str]) -> Tuple[str, ...]:
    capture = tuple(dict.fromkeys(capture))
    unknown = [p for p in capture if p not in bindings.tensors]
    if unknown:
        raise KeyError(f"no node(s) {unknown} in the model")
    return capture


def _plain(model: keras.Model, bindings: Bindings, batch: tf.Tensor, train: bool) -> tf.Tensor:
    """The output of a forward without captures: eagerly over the spec on the
    model's first call in a mode (tracing costs more than the call itself:
    ResNet50V2 at batch 2, see the README), compiled from the second on."""
    if train not in bindings.ran_eagerly:
        bindings.ran_eagerly.add(train)
        return execute.run(bindings, batch, train, lambda path, tensor: None)
    return _compiled(model, train)(batch)


class _Arrays:
    """Channels-first numpy arrays of eager NHWC tensors, one per tensor while it
    lives: paths sharing a tensor (a Sequential and its last child, which
    `execute` visits in a row) share one array. `.numpy()` copies the tensor's
    buffer, so the array never aliases memory TensorFlow may reuse; the channels-first
    view of that copy costs nothing more (a transposing copy of every node cost
    as much as the capturing forward itself). Only weak references are kept, so
    neither the tensor nor an array the caller dropped is held here."""

    def __init__(self):
        self._tensor = self._array = lambda: None

    def __call__(self, tensor) -> np.ndarray:
        array = self._array() if self._tensor() is tensor else None
        if array is None:
            array = _channels_first_view(tensor.numpy())
            self._tensor, self._array = weakref.ref(tensor), weakref.ref(array)
        return array


def forward(model: keras.Model, x: np.ndarray, capture: Sequence[str] = (),
            train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Forward of a channels-first batch, in inference mode or (`train`) in
    training mode (BatchNorm on batch statistics; the moving statistics are
    restored afterwards, so the model is unchanged); optionally the outputs of
    the spec nodes named in `capture` (channels-first views). A capturing
    forward, and the first plain one in a mode, run eagerly over the spec
    (`execute`); later plain forwards run a compiled function."""
    bindings = bindings_of(model)
    capture = _checked_capture(bindings, capture)
    batch = _nhwc_batch(bindings, x)
    if not capture:
        out = _restoring_statistics(model, train, lambda: _plain(model, bindings, batch, train))
        return _channels_first(out.numpy()), {}
    acts: Dict[str, np.ndarray] = {}
    wanted, arrays = set(capture), _Arrays()

    def keep(path: str, tensor) -> None:
        if path in wanted:
            acts[path] = arrays(tensor)

    out = _restoring_statistics(model, train, lambda: execute.run(bindings, batch, train, keep))
    return _channels_first(out.numpy()), {path: acts[path] for path in capture}


def stream(model: keras.Model, x: np.ndarray, capture: Sequence[str], sink: Callable[[str, np.ndarray], None],
           train: bool = False) -> np.ndarray:
    """The output of a forward (as `forward`) that hands each node in `capture`
    to `sink(path, activation)` as soon as it is computed, in the spec's
    execution order, once per path: a channels-first view of a copy of the
    node's output, which the sink may keep (nothing writes to it) or drop,
    freeing it; the backend keeps no reference to it."""
    bindings = bindings_of(model)
    wanted = set(_checked_capture(bindings, capture))
    batch = _nhwc_batch(bindings, x)
    arrays = _Arrays()

    def hand_over(path: str, tensor) -> None:
        if path in wanted:
            wanted.discard(path)
            sink(path, arrays(tensor))

    out = _restoring_statistics(model, train, lambda: execute.run(bindings, batch, train, hand_over))
    return _channels_first(out.numpy())


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
