"""One fuzz case in every backend, compared with the numpy reference (the oracle).

Weights are the canonical seeded weights (`refnets.weights.init`) and the input a
seeded standard normal, both drawn from the case's seeds, so a changed spec (the
shrinker's) gets weights and input of its own shapes from the same seeds. Each
backend's output is judged with the parity tolerances of its dtype
(`parity.engine.tolerances.DEFAULTS`, max|out - ref| <= atol + rtol * max|ref|).

A backend that refuses a spec with a capability error (`CapabilityError`,
`UnsupportedNodeError`) is "unsupported", not a disagreement; one that raises
anything else on a valid spec is an "error", which counts as a disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from refnets import backends
from refnets import spec as S
from refnets import weights as W
from refnets.backends import CapabilityError, UnsupportedNodeError

from ..engine import metrics, tolerances

AGREE, DISAGREE, UNSUPPORTED, ERROR = "agree", "disagree", "unsupported", "error"
FAILURES = (DISAGREE, ERROR)
DTYPES = ("float64", "float32")
ORACLE = "numpy"


@dataclass(frozen=True)
class Problem:
    """What is run: a spec, a batch, and the seeds of its weights and input."""

    model: S.ModelSpec
    batch: int
    weight_seed: int
    input_seed: int

    def weights(self, dtype: str) -> W.Weights:
        return W.init(self.model, seed=self.weight_seed, dtype=dtype)

    def input(self, dtype: str) -> np.ndarray:
        rng = np.random.default_rng(self.input_seed)
        return rng.standard_normal((self.batch,) + tuple(self.model.input_shape)).astype(dtype)


@dataclass
class Verdict:
    backend: str
    dtype: str
    status: str
    max_rel: float = 0.0
    detail: str = ""
    output: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        return self.status in FAILURES

    def same_failure(self, other: "Verdict") -> bool:
        """Whether `other` fails the way this one does (the shrinker keeps a change only
        then): the same status and the same kind of failure (a wrong shape, a non-finite
        output or an error over the bar; an exception of the same type)."""
        return self.status == other.status and _failure_kind(self.detail) == _failure_kind(other.detail)


def _failure_kind(detail: str) -> str:
    return detail.split(":", 1)[0].split(" ", 1)[0]


def reference(problem: Problem, dtype: str) -> np.ndarray:
    oracle = backends.get(ORACLE)
    net = oracle.build(problem.model, dtype=dtype)
    oracle.set_weights(net, problem.weights(dtype))
    return oracle.forward(net, problem.input(dtype))[0]


def evaluate(problem: Problem, label: str, dtype: str, ref: Optional[np.ndarray] = None) -> Verdict:
    """`label`'s verdict on `problem` in `dtype` against the numpy reference."""
    if ref is None:
        try:
            ref = reference(problem, dtype)
        except Exception as err:  # the oracle itself fails on a valid spec: a finding against refnets
            return oracle_error(label, dtype, err)
    try:
        out = native_output(problem, label, dtype)
    except (CapabilityError, UnsupportedNodeError) as err:
        return Verdict(label, dtype, UNSUPPORTED, detail=str(err))
    except Exception as err:  # a valid spec that a backend cannot build or run: a finding
        return Verdict(label, dtype, ERROR, float("inf"), f"{type(err).__name__}: {err}")
    rtol, atol = tolerances.DEFAULTS[dtype]
    out = np.asarray(out)
    comparison = metrics.compare(out, ref, rtol, atol)
    status = AGREE if comparison.passed else DISAGREE
    detail = "" if comparison.passed else _describe(comparison, out, ref)
    return Verdict(label, dtype, status, comparison.max_rel, detail, out)


def native_output(problem: Problem, label: str, dtype: str) -> np.ndarray:
    impl = backends.get(label)
    net = impl.build(problem.model, dtype=dtype)
    impl.set_weights(net, problem.weights(dtype))
    return impl.forward(net, problem.input(dtype))[0]


def _describe(comparison: metrics.Comparison, out: np.ndarray, ref: np.ndarray) -> str:
    if out.shape != ref.shape:
        return f"output shape {out.shape}, reference {ref.shape}"
    if not comparison.finite:
        return "non-finite output"
    return f"max rel error {comparison.max_rel:.3g}"


def run_problem(problem: Problem, labels: Sequence[str], dtypes: Sequence[str]) -> List[Verdict]:
    """Every backend's verdict in every dtype (the reference computed once per dtype)."""
    verdicts = []
    for dtype in dtypes:
        try:
            ref = reference(problem, dtype)
        except Exception as err:  # see `evaluate`
            verdicts.extend(oracle_error(label, dtype, err) for label in labels)
            continue
        verdicts.extend(evaluate(problem, label, dtype, ref) for label in labels)
    return verdicts


def oracle_error(label: str, dtype: str, err: Exception) -> Verdict:
    return Verdict(label, dtype, ERROR, float("inf"), f"{type(err).__name__}: the numpy reference failed: {err}")


@dataclass
class Tally:
    """Counts per backend and dtype: (label, dtype) -> status -> n."""

    counts: Dict[tuple, Dict[str, int]] = field(default_factory=dict)
    worst: Dict[tuple, float] = field(default_factory=dict)  # the largest error of an agreeing output
    cases: int = 0

    def add(self, verdicts: Sequence[Verdict]) -> None:
        self.cases += 1
        for v in verdicts:
            row = self.counts.setdefault((v.backend, v.dtype), {s: 0 for s in (AGREE, DISAGREE, UNSUPPORTED, ERROR)})
            row[v.status] += 1
            if v.status == AGREE:
                self.worst[v.backend, v.dtype] = max(self.worst.get((v.backend, v.dtype), 0.0), v.max_rel)

    def total(self, status: str) -> int:
        return sum(row[status] for row in self.counts.values())
