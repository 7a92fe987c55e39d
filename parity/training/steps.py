"""`run_train_steps` (`--train-steps N`): N optimiser steps on the same seeded batches;
every loss and the weights after every step, and the rounding floor (`--floor`)."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from refnets import spec as S

from ..engine.config import ParityUsageError
from ..engine.header import Progress
from .common import (DEFAULT_BATCH, DEFAULT_DTYPE, DEFAULT_LR, DEFAULT_MOMENTUM, OPTIMIZERS, ParamComparison, Run,
                     StepRecord, TrainingBackendResult, TrainingResult, first_failing, node_of,
                     node_scales, nudge, weight_comparisons)


def run_train_steps(model: Union[str, S.ModelSpec], steps: int, backends: Optional[Sequence[str]] = None,
                    reference: Optional[str] = None, optimizer: str = "sgd", lr: float = DEFAULT_LR,
                    momentum: float = DEFAULT_MOMENTUM, batch: int = DEFAULT_BATCH, input_shape=None,
                    dtype: str = DEFAULT_DTYPE, seed: int = 0, rtol: Optional[float] = None,
                    atol: Optional[float] = None, weights=None, options: Optional[dict] = None,
                    floor: bool = False, progress: Optional[Progress] = None, tf32: bool = False) -> TrainingResult:
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
    if not (lr > 0 and math.isfinite(lr)):
        raise ParityUsageError(f"the learning rate must be positive, got {lr!r}")
    if optimizer == "momentum" and not 0.0 < momentum < 1.0:
        raise ParityUsageError(f"momentum must be in (0, 1), got {momentum!r}")
    run = Run("train-steps", model, backends, reference, batch, input_shape, dtype, seed, rtol, atol, weights,
               options, True, progress, tf32=tf32)
    result = run.result
    result.optimizer, result.lr, result.steps = optimizer, float(lr), steps
    result.momentum = float(momentum) if optimizer == "momentum" else 0.0
    result.notes += hyperparameter_notes(result)
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
                drift = weight_comparisons(run, run.impls[result.reference].get_weights(nudged), ref_weights)
                result.floor.append(max(p.comparison.max_rel for p in drift))
        for name in run.others:
            weights = run.timed_call("weights", name, run.impls[name].get_weights, run.nets[name])
            with run.timed("compare", name):
                params = weight_comparisons(run, weights, ref_weights)
                records[name].append(step_record(run, step, name, params, weights, ref_weights, start))
                if firsts[name][0] is None:
                    first = first_divergent_weight(run, params)
                    firsts[name] = (first, step if first is not None else None)
                final[name] = params
            del weights
        del ref_weights
    for name in run.others:
        result.results[name] = TrainingBackendResult(name, params=final[name], first_divergent=firsts[name][0],
                                                     first_divergent_step=firsts[name][1], steps=records[name])
    return result


def hyperparameter_notes(result: TrainingResult) -> List[str]:
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


def step_record(run: Run, step, name, params, weights, ref_weights, start) -> StepRecord:
    """The step's loss, the worst weight after it, and the worst change since the
    start (w_k - w_0 against the reference's, at its node's scale): the change is
    what training did, so its error is not diluted by the initial weights."""
    losses = run.result.losses
    worst_weight = max(params, key=lambda p: p.comparison.max_rel)
    updates = []
    for keys in _bynode_of(run.trainable_names).values():  # one node's changes at a time: memory
        changes = {k: np.subtract(ref_weights[k], start[k], dtype=np.float64) for k in keys}
        scale = node_scales(changes)[node_of(keys[0])]
        updates += [(k, run.compare(np.subtract(weights[k], start[k], dtype=np.float64), changes[k], scale))
                    for k in keys]
        del changes
    worst_update = max(updates, key=lambda u: u[1].max_rel)
    return StepRecord(step, run.compare(np.float64(losses[name][-1]), np.float64(losses[run.result.reference][-1])),
                      worst_weight.comparison, worst_weight.name, worst_update[1], worst_update[0])


def _bynode_of(names: Sequence[str]) -> Dict[str, List[str]]:
    nodes: Dict[str, List[str]] = {}
    for key in names:
        nodes.setdefault(node_of(key), []).append(key)
    return nodes


def first_divergent_weight(run: Run, params: List[ParamComparison]) -> Optional[ParamComparison]:
    """Trainable weights in backpropagation order (they follow the gradients), then
    running statistics in execution order."""
    weights = [p for p in params if p.kind == "weight"]
    stats = [p for p in params if p.kind == "running statistic"]
    order = {k: i for i, k in enumerate(run.trainable_names)}
    weights.sort(key=lambda p: -order[p.name])
    return first_failing(weights) or first_failing(stats)
