"""`run_train` (`--train`): one training-mode step without the optimiser: logits, loss
and every BatchNorm's running statistics after it; divergent logits localised per node."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
from refnets import spec as S

from ..engine.header import Progress
from ..engine.localise import capture_paths, localise
from .common import (DEFAULT_BATCH, DEFAULT_DTYPE, ParamComparison, Run, TrainingBackendResult, TrainingResult,
                     first_failing, statistics_of)


def run_train(model: Union[str, S.ModelSpec], backends: Optional[Sequence[str]] = None,
              reference: Optional[str] = None, batch: int = DEFAULT_BATCH, input_shape=None,
              dtype: str = DEFAULT_DTYPE, seed: int = 0, rtol: Optional[float] = None,
              atol: Optional[float] = None, weights=None, options: Optional[dict] = None,
              progress: Optional[Progress] = None, tf32: bool = False) -> TrainingResult:
    """One training step without the optimiser (forward and backward in training
    mode): compare the training-mode logits and loss, and every BatchNorm's
    running statistics after the step. Divergent logits are localised per node
    (training-mode forward)."""
    run = Run("train", model, backends, reference, batch, input_shape, dtype, seed, rtol, atol, weights, options,
               True, progress, tf32=tf32)
    x, labels = run.batch_data(0)
    ref = ref_stats = None
    for name, net in run.one_at_a_time():
        got = run.timed_call("step", name, run.impls[name].gradients, net, x, labels, True)
        stats = statistics_of(run.timed_call("weights", name, run.impls[name].get_weights, net))
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
                first_divergent=first_failing(params))
    localise_training_outputs(run, x)
    return run.result


def localise_training_outputs(run: Run, x: np.ndarray) -> None:
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
