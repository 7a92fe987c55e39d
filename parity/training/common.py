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
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import refnets
from refnets import backends as B
from refnets import shapes
from refnets import spec as S

from ..engine.config import (ParityUsageError, canonical_weights, check_batch, check_dtype, resolve_backends,
                             resolve_model, resolve_tolerance)
from ..engine.header import RunHeader, progress_or_quiet, timed_into
from ..engine.localise import Localisation
from ..engine.metrics import Comparison, compare
from ..engine.session import import_backends
from ..engine.tolerances import training_tolerance

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


@dataclass(kw_only=True)
class TrainingResult(RunHeader):
    mode: str
    backends: List[str]
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
    param_counts: Dict[str, tuple] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)  # what a reader needs to know to read the figures
    floor: Optional[List[float]] = None  # train-steps: the reference against itself nudged by one ulp, per step

    @property
    def passed(self) -> bool:
        return all(r.passed for name, r in self.results.items() if name != self.reference)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


# ---------------------------------------------------------------------- one run's state


class Run:
    """What every mode does before its step: resolve and check the arguments,
    build the dropout-free spec, draw the weights, import the backends, build
    every model and load the weights; plus helpers for timing and comparing."""

    def __init__(self, mode, model, backends, reference, batch, input_shape, dtype, seed, rtol, atol, weights,
                 options, train, progress, tf32=False):
        self.say = progress_or_quiet(progress)
        check_dtype(dtype)
        check_batch(batch, strict_int=True)
        spec, dropped = S.without_dropout(resolve_model(model, input_shape, options))
        infos = refnets.infer(spec)  # input too small: fail before importing anything
        self.num_classes = num_classes_of(spec, infos)
        fewest = fewest_batchnorm_values(infos, batch)
        if train and fewest is not None and fewest[0] < 2:
            raise ParityUsageError(
                f"training-mode BatchNorm '{fewest[1]}' would normalise {fewest[0]} value per channel "
                f"(batch x height x width); use a batch of at least 2")
        chosen = resolve_backends(backends, reference)
        rtol, atol = resolve_tolerance(training_tolerance(spec.name, dtype), rtol, atol)
        self.spec = spec
        self.result = TrainingResult(
            mode=mode, model=spec.name, backends=chosen, reference=chosen[0], dtype=dtype,
            input_shape=tuple(spec.input_shape), batch=batch, seed=seed,
            rtol=rtol, atol=atol, train_mode=train, dropout_removed=dropped, fewest_batchnorm_values=fewest, options=dict(spec.options), tf32=tf32)
        self.canonical = canonical_weights(spec, weights, seed, dtype)
        self.impls = import_backends(self.result, chosen, self.say)
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

    def timed(self, phase: str, key: str):
        return timed_into(self.result.timings, phase, key)

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


def node_of(param: str) -> str:
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
        scales[node_of(key)] = max(scales.get(node_of(key), 0.0), peak)
    return scales


def gradient_of(grads: Dict[str, np.ndarray], key: str) -> np.ndarray:
    """A backend's gradient of `key`; an empty array (a failing comparison: wrong
    shape) when the backend has none, e.g. for a parameter it does not train."""
    return grads[key] if key in grads else np.empty((0,))


def first_failing(params) -> Optional[ParamComparison]:
    return next((p for p in params if not p.comparison.passed), None)


def statistics_of(weights: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {k: v for k, v in weights.items() if k.rsplit(".", 1)[-1] in shapes.BN_STATISTICS}


def num_classes_of(spec: S.ModelSpec, infos) -> int:
    out = infos[""].out_shape
    if len(out) != 1 or out[0] < 2:
        raise ParityUsageError(f"{spec.name}: the cross-entropy loss needs logits of shape (classes,), "
                               f"the model gives {out}")
    return int(out[0])


def fewest_batchnorm_values(infos: Dict[str, shapes.NodeInfo], batch: int) -> Optional[Tuple[int, str]]:
    """(values per channel, node) of the BatchNorm that normalises over the fewest
    values in training mode (batch x H x W); None without BatchNorm."""
    counts = [(batch * int(np.prod(info.in_shape[1:])), path) for path, info in infos.items()
              if isinstance(info.applied, S.BatchNorm)]  # a shared BatchNorm normalises again
    return min(counts) if counts else None


def nudge(weights: Dict[str, np.ndarray], seed: int = 0) -> Dict[str, np.ndarray]:
    """Every weight moved by one rounding unit of its dtype, up or down at random
    (w * (1 +- eps)), seeded."""
    rng = np.random.default_rng((seed, 1 << 20))
    return {k: (v * (1 + np.finfo(v.dtype).eps * rng.choice([-1.0, 1.0], v.shape))).astype(v.dtype)
            for k, v in weights.items()}


def weight_comparisons(run: Run, weights, ref_weights) -> List[ParamComparison]:
    return [ParamComparison(key, "running statistic" if key.rsplit(".", 1)[-1] in shapes.BN_STATISTICS else "weight",
                            run.compare(weights[key], ref_weights[key]))
            for key in ref_weights]


