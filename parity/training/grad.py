"""`run_grad` (`--grad`): the loss, d loss / d input and every parameter's gradient,
compared across backends; the first divergent gradient in backpropagation order."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
from refnets import spec as S

from ..engine.header import Progress
from .common import (DEFAULT_BATCH, DEFAULT_DTYPE, ParamComparison, Run, TrainingBackendResult, TrainingResult,
                     first_failing, gradient_of, node_of, node_scales)


def run_grad(model: Union[str, S.ModelSpec], backends: Optional[Sequence[str]] = None,
             reference: Optional[str] = None, batch: int = DEFAULT_BATCH, input_shape=None,
             dtype: str = DEFAULT_DTYPE, seed: int = 0, rtol: Optional[float] = None,
             atol: Optional[float] = None, weights=None, options: Optional[dict] = None, train: bool = True,
             progress: Optional[Progress] = None, tf32: bool = False) -> TrainingResult:
    """Compare the loss, d loss / d input and every parameter's gradient (canonical
    layout) across backends. `train`: in training mode, the gradient an optimiser
    step uses (default); False: in inference mode (BatchNorm on running statistics)."""
    run = Run("grad", model, backends, reference, batch, input_shape, dtype, seed, rtol, atol, weights, options,
               train, progress, tf32=tf32)
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
            params = [ParamComparison(key, "gradient", run.compare(gradient_of(got.params, key), ref.params[key],
                                                                   scales[node_of(key)]))
                      for key in run.trainable_names]
            run.result.results[name] = TrainingBackendResult(
                name, loss=run.compare(np.float64(got.loss), np.float64(ref.loss)),
                input_grad=run.compare(got.input, ref.input), params=params,
                first_divergent=first_failing(reversed(params)))
        del got
    return run.result
