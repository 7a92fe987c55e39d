"""Beyond inference: gradients, a training-mode step, and N optimiser steps,
compared across backends on the same weights and seeded batches.

    run_grad(...)         d loss / d input and d loss / d every parameter (`--grad`)
    run_train(...)        one training step without the optimiser: training-mode
                          outputs and loss, and the BatchNorm running statistics
                          after the step (`--train`)
    run_train_steps(...)  N optimiser steps: the loss of every step, the weights
                          after every step, the final weights (`--train-steps N`)

The loss is the mean softmax cross-entropy of the logits over the batch, each
framework's own, on seeded integer labels. Training mode means: BatchNorm on
batch statistics, running statistics updated by the spec's rule (momentum, and
the unbiased running variance, mapped into each framework by its backend), and
no dropout: every Dropout node runs as an Identity (`spec.without_dropout`),
because each framework draws its mask from its own generator; the report lists
the nodes.

Which parameter diverges first: a gradient is computed backwards, so a fault in
a node's backward shows in the gradients of the parameters *before* it; the
first divergent gradient in backpropagation order (reverse execution order) is
the one nearest the fault. Running statistics are computed forwards: the first
divergent one in execution order is named. A gradient is judged at the scale of
its node's largest gradient (`node_scales`), because some gradients are zero by
construction (a conv bias followed by a training-mode BatchNorm), and their own
scale would be rounding noise.

Returns `TrainingResult`s with the same verdicts and exit codes as `parity.run`:
0 all agree, 1 some disagree; bad arguments raise one of USAGE_ERRORS (exit 2).
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import refnets
from refnets import backends as B
from refnets import shapes
from refnets import spec as S

from .localise import Localisation, capture_paths, localise
from .metrics import Comparison, compare
from .runner import (DTYPES, ParityUsageError, Progress, _canonical_weights, _import_backends, _resolve_backends,
                     _resolve_model)
from .tolerances import training_tolerance

OPTIMIZERS = B.OPTIMIZERS
# Exactly representable in float32: MXNet's optimiser operators take the learning
# rate and momentum as C floats, so 0.01 or 0.9 would be rounded in a float64 run
# (a measured 2e-8 relative difference in every update; see `_hyperparameter_notes`).
# A small rate, as for fine-tuning: at 2^-6 a float64 ResNet-18 step amplifies
# the frameworks' rounding differences about 3-fold per step (README).
DEFAULT_LR = 2.0 ** -10  # 0.0009765625
DEFAULT_MOMENTUM = 0.875
# Float32 gradients of ReLU / max-pool networks differ wherever an input within
# rounding of a kink takes the other branch in one framework (README); float64 is
# the default of the training runs, as of gradient checks generally.
DEFAULT_DTYPE = "float64"
# Training-mode BatchNorm over few values per channel is ill-conditioned: at 3x32x32
# ResNet's last stage has 1x1 maps, so batch 2 normalises 2 values per channel, and
# float64 gradients of ResNet-18 differ by 2e-9 across frameworks; at batch 8 by 6e-14
# (README, "Training parity"). Batch 8 is the default.
DEFAULT_BATCH = 8


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ParamComparison:
    name: str  # canonical parameter name
    kind: str  # "gradient", "running statistic" or "weight"
    comparison: Comparison


@dataclass(frozen=True)
class StepRecord:
    """One optimiser step of a backend against the reference's same step."""

    step: int  # 1-based
    loss: Comparison  # this step's loss (before its update)
    weights: Comparison  # the worst parameter after the step (own scale)
    weights_worst: str
    update: Comparison  # the worst parameter's change since the start (w_k - w_0; node scale)
    update_worst: str

    @property
    def passed(self) -> bool:
        return self.loss.passed and self.weights.passed


@dataclass
class TrainingBackendResult:
    backend: str
    loss: Optional[Comparison] = None  # grad, train: the loss of the step
    outputs: Optional[Comparison] = None  # train: the training-mode logits
    input_grad: Optional[Comparison] = None  # grad
    params: List[ParamComparison] = field(default_factory=list)  # execution order
    first_divergent: Optional[ParamComparison] = None
    first_divergent_step: Optional[int] = None  # train-steps: the step at which it was found
    steps: List[StepRecord] = field(default_factory=list)  # train-steps
    localisation: Optional[Localisation] = None  # train: per-node training-mode outputs, when they diverge

    @property
    def passed(self) -> bool:
        checks = [c for c in (self.loss, self.outputs, self.input_grad) if c is not None]
        return (all(c.passed for c in checks) and all(p.comparison.passed for p in self.params)
                and all(s.passed for s in self.steps))


@dataclass
class TrainingResult:
    mode: str
    model: str
    backends: List[str]
    reference: str
    dtype: str
    input_shape: tuple
    batch: int
    seed: int
    rtol: float
    atol: float
    train_mode: bool  # grad: gradients in training mode (False: inference mode)
    dropout_removed: Tuple[str, ...] = ()
    fewest_batchnorm_values: Optional[Tuple[int, str]] = None  # (values per channel in training mode, node)
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    momentum: Optional[float] = None
    steps: int = 0
    losses: Dict[str, List[float]] = field(default_factory=dict)  # backend -> loss of every step
    results: Dict[str, TrainingBackendResult] = field(default_factory=dict)
    timings: Dict[str, Dict[str, float]] = field(default_factory=dict)
    versions: Dict[str, str] = field(default_factory=dict)
    param_counts: Dict[str, tuple] = field(default_factory=dict)
    options: Dict[str, object] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)  # what a reader needs to know to read the figures
    floor: Optional[List[float]] = None  # train-steps: the reference against itself nudged by one ulp, per step

    @property
    def passed(self) -> bool:
        return all(r.passed for name, r in self.results.items() if name != self.reference)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


# ------------------------------------------------------------------------- the runs


def run_grad(model: Union[str, S.ModelSpec], backends: Optional[Sequence[str]] = None,
             reference: Optional[str] = None, batch: int = DEFAULT_BATCH, input_shape=None,
             dtype: str = DEFAULT_DTYPE, seed: int = 0, rtol: Optional[float] = None,
             atol: Optional[float] = None, weights=None, options: Optional[dict] = None, train: bool = True,
             progress: Optional[Progress] = None) -> TrainingResult:
    """Compare the loss, d loss / d input and every parameter's gradient (canonical
    layout) across backends. `train`: in training mode, the gradient an optimiser
    step uses (default); False: in inference mode (BatchNorm on running statistics)."""
    run = _Run("grad", model, backends, reference, batch, input_shape, dtype, seed, rtol, atol, weights, options,
               train, progress)
    x, labels = run.batch_data(0)
    ref = None
    for name, net in run.one_at_a_time():
        got = run.timed_call("step", name, run.impls[name].gradients, net, x, labels, train)
        run.result.losses[name] = [got.loss]
        del net
        if ref is None:
            ref, scales = got, node_scales(got.params)
            continue
        with run.timed("compare", name):
            params = [ParamComparison(key, "gradient", run.compare(_gradient(got.params, key), ref.params[key],
                                                                   scales[_node(key)]))
                      for key in run.trainable_names]
            run.result.results[name] = TrainingBackendResult(
                name, loss=run.compare(np.float64(got.loss), np.float64(ref.loss)),
                input_grad=run.compare(got.input, ref.input), params=params,
                first_divergent=_first_failing(reversed(params)))
        del got
    return run.result


def run_train(model: Union[str, S.ModelSpec], backends: Optional[Sequence[str]] = None,
              reference: Optional[str] = None, batch: int = DEFAULT_BATCH, input_shape=None,
              dtype: str = DEFAULT_DTYPE, seed: int = 0, rtol: Optional[float] = None,
              atol: Optional[float] = None, weights=None, options: Optional[dict] = None,
              progress: Optional[Progress] = None) -> TrainingResult:
    """One training step without the optimiser (forward and backward in training
    mode): compare the training-mode logits and loss, and every BatchNorm's
    running statistics after the step. Divergent logits are localised per node
    (training-mode forward)."""
    run = _Run("train", model, backends, reference, batch, input_shape, dtype, seed, rtol, atol, weights, options,
               True, progress)
    x, labels = run.batch_data(0)
    ref = ref_stats = None
    for name, net in run.one_at_a_time():
        got = run.timed_call("step", name, run.impls[name].gradients, net, x, labels, True)
        stats = run.timed_call("weights", name, lambda: _statistics(run.impls[name].get_weights(net)))
        run.result.losses[name] = [got.loss]
        del net
        if ref is None:
            ref, ref_stats = got, stats
            continue
        with run.timed("compare", name):
            params = [ParamComparison(key, "running statistic", run.compare(stats[key], ref_stats[key]))
                      for key in ref_stats]
            run.result.results[name] = TrainingBackendResult(
                name, loss=run.compare(np.float64(got.loss), np.float64(ref.loss)),
                outputs=run.compare(got.logits, ref.logits), params=params,
                first_divergent=_first_failing(params))
    _localise_training_outputs(run, x)
    return run.result


def run_train_steps(model: Union[str, S.ModelSpec], steps: int, backends: Optional[Sequence[str]] = None,
                    reference: Optional[str] = None, optimizer: str = "sgd", lr: float = DEFAULT_LR,
                    momentum: float = DEFAULT_MOMENTUM, batch: int = DEFAULT_BATCH, input_shape=None,
                    dtype: str = DEFAULT_DTYPE, seed: int = 0, rtol: Optional[float] = None,
                    atol: Optional[float] = None, weights=None, options: Optional[dict] = None,
                    floor: bool = False, progress: Optional[Progress] = None) -> TrainingResult:
    """`steps` optimiser steps in every backend, each on the same seeded batch
    (a new one per step) with each framework's own SGD: compare every step's
    loss and the weights after every step (BatchNorm statistics included); the
    per-step figures show how the disagreement grows.

    `floor`: also train a second reference model from the same weights moved by
    one rounding unit (`nudge`) and record, per step, how far the reference
    drifts from itself (`TrainingResult.floor`): the problem's own
    amplification of rounding, below which no two frameworks can be expected to
    agree after that many steps. It is reported beside the verdict, which it
    does not change."""
    if not isinstance(steps, int) or steps < 1:
        raise ParityUsageError(f"the number of training steps must be a positive integer, got {steps!r}")
    if optimizer not in OPTIMIZERS:
        raise ParityUsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if not lr > 0:
        raise ParityUsageError(f"the learning rate must be positive, got {lr!r}")
    if optimizer == "momentum" and not 0.0 < momentum < 1.0:
        raise ParityUsageError(f"momentum must be in (0, 1), got {momentum!r}")
    run = _Run("train-steps", model, backends, reference, batch, input_shape, dtype, seed, rtol, atol, weights,
               options, True, progress)
    result = run.result
    result.optimizer, result.lr, result.steps = optimizer, float(lr), steps
    result.momentum = float(momentum) if optimizer == "momentum" else 0.0
    result.notes += _hyperparameter_notes(result)
    run.nets = {name: net for name, net in run.one_at_a_time()}
    trainers = run.each("build", lambda impl, net: impl.Trainer(net, optimizer, lr, result.momentum))
    start = run.canonical
    nudged = None
    if floor:
        ref_impl = run.impls[result.reference]
        with run.timed("floor", result.reference):
            nudged = ref_impl.build(run.spec, dtype=dtype)
            ref_impl.set_weights(nudged, nudge(start, seed))
            nudged_trainer = ref_impl.Trainer(nudged, optimizer, lr, result.momentum)
        result.floor = []
    result.losses = {name: [] for name in result.backends}
    records: Dict[str, List[StepRecord]] = {name: [] for name in run.others}
    final: Dict[str, List[ParamComparison]] = {}
    firsts: Dict[str, Tuple[Optional[ParamComparison], Optional[int]]] = {n: (None, None) for n in run.others}
    for step in range(1, steps + 1):
        x, labels = run.batch_data(step)
        run.say(f"step {step} of {steps}")
        for name, impl in run.impls.items():
            with run.timed("step", name):
                result.losses[name].append(trainers[name].step(x, labels))
        ref_weights = run.timed_call("weights", result.reference, run.impls[result.reference].get_weights,
                                     run.nets[result.reference])
        if nudged is not None:
            with run.timed("floor", result.reference):
                nudged_trainer.step(x, labels)
                drift = _weight_comparisons(run, run.impls[result.reference].get_weights(nudged), ref_weights)
                result.floor.append(max(p.comparison.max_rel for p in drift))
        for name in run.others:
            weights = run.timed_call("weights", name, run.impls[name].get_weights, run.nets[name])
            with run.timed("compare", name):
                params = _weight_comparisons(run, weights, ref_weights)
                records[name].append(_step_record(run, step, name, params, weights, ref_weights, start))
                if firsts[name][0] is None:
                    first = _first_divergent_weight(run, params)
                    firsts[name] = (first, step if first is not None else None)
                final[name] = params
            del weights
        del ref_weights
    for name in run.others:
        result.results[name] = TrainingBackendResult(name, params=final[name], first_divergent=firsts[name][0],
                                                     first_divergent_step=firsts[name][1], steps=records[name])
    return result


# ---------------------------------------------------------------------- one run's state


class _Run:
    """What every mode does before its step: resolve and check the arguments,
    build the dropout-free spec, draw the weights, import the backends, build
    every model and load the weights; plus helpers for timing and comparing."""

    def __init__(self, mode, model, backends, reference, batch, input_shape, dtype, seed, rtol, atol, weights,
                 options, train, progress):
        self.say = progress or (lambda _msg: None)
        if dtype not in DTYPES:
            raise ParityUsageError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if not isinstance(batch, int) or batch < 1:
            raise ParityUsageError(f"batch must be a positive integer, got {batch!r}")
        spec, dropped = S.without_dropout(_resolve_model(model, input_shape, options))
        infos = refnets.infer(spec)  # input too small: fail before importing anything
        self.num_classes = _num_classes(spec, infos)
        fewest = fewest_batchnorm_values(infos, batch)
        if train and fewest is not None and fewest[0] < 2:
            raise ParityUsageError(
                f"training-mode BatchNorm '{fewest[1]}' would normalise {fewest[0]} value per channel "
                f"(batch x height x width); use a batch of at least 2")
        chosen = _resolve_backends(backends, reference)
        default_rtol, default_atol = training_tolerance(spec.name, dtype)
        self.spec = spec
        self.result = TrainingResult(
            mode=mode, model=spec.name, backends=chosen, reference=chosen[0], dtype=dtype,
            input_shape=tuple(spec.input_shape), batch=batch, seed=seed,
            rtol=default_rtol if rtol is None else rtol, atol=default_atol if atol is None else atol,
            train_mode=train, dropout_removed=dropped, fewest_batchnorm_values=fewest, options=dict(spec.options))
        self.canonical = _canonical_weights(spec, weights, seed, dtype)
        self.impls = _import_backends(self.result, chosen, self.say)
        self.nets: Dict[str, object] = {}
        self.others = chosen[1:]
        self.trainable_names = [k for k in shapes.param_shapes(spec)
                                if k.rsplit(".", 1)[-1] not in shapes.BN_STATISTICS]

    def build(self, name: str):
        """Backend `name`'s native model with the canonical weights."""
        impl = self.impls[name]
        self.say(f"building {self.spec.name} in {name}")
        net = self.timed_call("build", name, impl.build, self.spec, self.result.dtype)
        self.result.param_counts[name] = impl.count_params(net)
        self.say(f"setting weights in {name}")
        self.timed_call("weights", name, impl.set_weights, net, self.canonical)
        return net

    def one_at_a_time(self):
        """(backend, native model) for every backend, reference first, each built
        when the previous one is done with: one model in memory at a time."""
        for name in self.result.backends:
            gc.collect()  # the previous backend's model (framework objects hold reference cycles)
            yield name, self.build(name)

    def batch_data(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
        """The seeded input and labels of `step` (0 for grad and train), the same in every backend."""
        r = self.result
        return seeded_batch(r.seed, step, r.batch, self.spec.input_shape, r.dtype, self.num_classes)

    @contextmanager
    def timed(self, phase: str, key: str):
        start = time.perf_counter()
        yield
        phases = self.result.timings.setdefault(phase, {})
        phases[key] = phases.get(key, 0.0) + time.perf_counter() - start

    def timed_call(self, phase: str, key: str, fn, *args):
        with self.timed(phase, key):
            return fn(*args)

    def each(self, phase: str, fn) -> Dict[str, object]:
        """fn(backend module, native model) for every built model, timed as `phase`."""
        out = {}
        for name, impl in self.impls.items():
            self.say(f"{phase} in {name}")
            out[name] = self.timed_call(phase, name, fn, impl, self.nets[name])
        return out

    def compare(self, out, ref, scale: Optional[float] = None) -> Comparison:
        return compare(np.asarray(out), np.asarray(ref), self.result.rtol, self.result.atol, scale)


# ------------------------------------------------------------------------- helpers


def seeded_batch(seed: int, step: int, batch: int, input_shape, dtype: str,
                 num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """The input (standard normal, channels-first) and integer labels of `step`."""
    rng = np.random.default_rng((seed, step))
    x = rng.standard_normal((batch,) + tuple(input_shape)).astype(dtype)
    return x, rng.integers(0, num_classes, batch)


def _node(param: str) -> str:
    return param.rsplit(".", 1)[0]


def node_scales(grads: Dict[str, np.ndarray]) -> Dict[str, float]:
    """node -> the largest |value| over the arrays of its parameters: the scale at
    which each of them is judged. A conv bias followed by a training-mode
    BatchNorm has a gradient that is zero by construction (the BatchNorm removes
    the batch mean), so its own largest value is rounding noise; its weight's
    gradient, computed from the same upstream gradient, sets the scale."""
    scales: Dict[str, float] = {}
    for key, value in grads.items():
        peak = float(np.max(np.abs(value))) if np.size(value) else 0.0
        scales[_node(key)] = max(scales.get(_node(key), 0.0), peak)
    return scales


def _gradient(grads: Dict[str, np.ndarray], key: str) -> np.ndarray:
    """A backend's gradient of `key`; an empty array (a failing comparison: wrong
    shape) when the backend has none, e.g. for a parameter it does not train."""
    return grads[key] if key in grads else np.empty((0,))


def _first_failing(params) -> Optional[ParamComparison]:
    return next((p for p in params if not p.comparison.passed), None)


def _statistics(weights: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {k: v for k, v in weights.items() if k.rsplit(".", 1)[-1] in shapes.BN_STATISTICS}


def _num_classes(spec: S.ModelSpec, infos) -> int:
    out = infos[""].out_shape
    if len(out) != 1 or out[0] < 2:
        raise ParityUsageError(f"{spec.name}: the cross-entropy loss needs logits of shape (classes,), "
                               f"the model gives {out}")
    return int(out[0])


def fewest_batchnorm_values(infos: Dict[str, shapes.NodeInfo], batch: int) -> Optional[Tuple[int, str]]:
    """(values per channel, node) of the BatchNorm that normalises over the fewest
    values in training mode (batch x H x W); None without BatchNorm."""
    counts = [(batch * int(np.prod(info.in_shape[1:])), path) for path, info in infos.items()
              if isinstance(info.node, S.BatchNorm)]
    return min(counts) if counts else None


def nudge(weights: Dict[str, np.ndarray], seed: int = 0) -> Dict[str, np.ndarray]:
    """Every weight moved by one rounding unit of its dtype, up or down at random
    (w * (1 +- eps)), seeded."""
    rng = np.random.default_rng((seed, 1 << 20))
    return {k: (v * (1 + np.finfo(v.dtype).eps * rng.choice([-1.0, 1.0], v.shape))).astype(v.dtype)
            for k, v in weights.items()}


def _hyperparameter_notes(result: TrainingResult) -> List[str]:
    """MXNet's optimiser operators take the learning rate and momentum as C floats:
    in a float64 run a value float32 cannot hold exactly is rounded there alone."""
    if "mxnet" not in result.backends or result.dtype != "float64":
        return []
    values = {"learning rate": result.lr, "momentum": result.momentum}
    rounded = {k: float(np.float32(v)) for k, v in values.items()}
    return [f"MXNet's optimiser holds the {k} as float32: {values[k]!r} becomes {rounded[k]!r} there, a relative "
            f"difference of {abs(rounded[k] - values[k]) / values[k]:.1e} in every update (choose a value float32 "
            f"holds exactly, such as a power of 2, to compare in float64)"
            for k in values if values[k] and rounded[k] != values[k]]


def _weight_comparisons(run: _Run, weights, ref_weights) -> List[ParamComparison]:
    return [ParamComparison(key, "running statistic" if key.rsplit(".", 1)[-1] in shapes.BN_STATISTICS else "weight",
                            run.compare(weights[key], ref_weights[key]))
            for key in ref_weights]


def _step_record(run: _Run, step, name, params, weights, ref_weights, start) -> StepRecord:
    """The step's loss, the worst weight after it, and the worst change since the
    start (w_k - w_0 against the reference's, at its node's scale): the change is
    what training did, so its error is not diluted by the initial weights."""
    losses = run.result.losses
    worst_weight = max(params, key=lambda p: p.comparison.max_rel)
    updates = []
    for keys in _by_node(run.trainable_names).values():  # one node's changes at a time: memory
        changes = {k: np.subtract(ref_weights[k], start[k], dtype=np.float64) for k in keys}
        scale = node_scales(changes)[_node(keys[0])]
        updates += [(k, run.compare(np.subtract(weights[k], start[k], dtype=np.float64), changes[k], scale))
                    for k in keys]
        del changes
    worst_update = max(updates, key=lambda u: u[1].max_rel)
    return StepRecord(step, run.compare(np.float64(losses[name][-1]), np.float64(losses[run.result.reference][-1])),
                      worst_weight.comparison, worst_weight.name, worst_update[1], worst_update[0])


def _by_node(names: Sequence[str]) -> Dict[str, List[str]]:
    nodes: Dict[str, List[str]] = {}
    for key in names:
        nodes.setdefault(_node(key), []).append(key)
    return nodes


def _first_divergent_weight(run: _Run, params: List[ParamComparison]) -> Optional[ParamComparison]:
    """Trainable weights in backpropagation order (they follow the gradients), then
    running statistics in execution order."""
    weights = [p for p in params if p.kind == "weight"]
    stats = [p for p in params if p.kind == "running statistic"]
    order = {k: i for i, k in enumerate(run.trainable_names)}
    weights.sort(key=lambda p: -order[p.name])
    return _first_failing(weights) or _first_failing(stats)


def _localise_training_outputs(run: _Run, x: np.ndarray) -> None:
    """Per-node comparison of the training-mode forward (which reads no running
    statistic, so the step's update does not change it) for every backend whose
    logits diverge."""
    result = run.result
    failing = [n for n in run.others if not result.results[n].outputs.passed]
    if not failing:
        return
    paths = capture_paths(run.spec)
    with run.timed("localise", result.reference):
        _, ref_acts = run.impls[result.reference].forward(run.build(result.reference), x, capture=paths, train=True)
    for name in failing:
        with run.timed("localise", name):
            _, acts = run.impls[name].forward(run.build(name), x, capture=paths, train=True)
            result.results[name].localisation = localise(run.spec, ref_acts, acts, result.rtol, result.atol)
            del acts
