"""`parity.run`: one architecture, the same weights and input in every chosen
backend, every backend compared with the reference, divergences localised."""

from __future__ import annotations

import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import refnets
from refnets import backends as B
from refnets import registry
from refnets import spec as S
from refnets import weights as W
from refnets.backends.port_common import PortModelError
from refnets.zoo_import import UnknownZooError

from .localise import Localisation, capture_paths, localise
from .metrics import Comparison, compare
from .tolerances import tolerance

DTYPES = ("float32", "float64")


class ParityUsageError(Exception):
    """Bad arguments or environment (exit code 2): the message says what to do."""


USAGE_ERRORS = (registry.UnknownModelError, registry.BadOptionError, B.UnknownBackendError,
                B.BackendUnavailableError, refnets.InputTooSmallError, W.WeightFileError,
                W.WeightMismatchError, ParityUsageError, UnknownZooError,
                PortModelError)


@dataclass
class BackendResult:
    backend: str
    comparison: Optional[Comparison] = None  # None for the reference
    localisation: Optional[Localisation] = None


@dataclass
class ParityResult:
    model: str
    backends: List[str]
    reference: str
    dtype: str
    input_shape: tuple
    batch: int
    seed: int
    rtol: float
    atol: float
    results: Dict[str, BackendResult] = field(default_factory=dict)
    timings: Dict[str, Dict[str, float]] = field(default_factory=dict)  # phase -> backend -> seconds
    versions: Dict[str, str] = field(default_factory=dict)
    param_counts: Dict[str, tuple] = field(default_factory=dict)
    options: Dict[str, object] = field(default_factory=dict)  # the model options used
    against: Optional[str] = None  # a zoo run (`run_against`): the zoo, whose model is the reference
    zoo_model: Optional[str] = None  # the zoo's own name for it

    @property
    def passed(self) -> bool:
        return all(r.comparison is None or r.comparison.passed for r in self.results.values())

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


Progress = Callable[[str], None]


@contextmanager
def _timed(result: ParityResult, phase: str, key: str):
    start = time.perf_counter()
    yield
    result.timings.setdefault(phase, {})[key] = time.perf_counter() - start


def _resolve_model(model: Union[str, S.ModelSpec], input_shape, options) -> S.ModelSpec:
    if isinstance(model, S.ModelSpec):
        return model.with_input_shape(input_shape) if input_shape else model
    return registry.get_spec(model, input_shape=input_shape, **(options or {}))


def _resolve_backends(names: Optional[Sequence[str]], reference: Optional[str]) -> List[str]:
    chosen = list(names) if names else B.installed()
    for name in chosen:
        B.check_name(name)
    if len(set(chosen)) != len(chosen):
        raise ParityUsageError(f"backend listed twice in {','.join(chosen)}")
    if reference is not None:
        B.check_name(reference)
        chosen = [reference] + [b for b in chosen if b != reference]
    if len(chosen) < 2:
        found = ", ".join(B.installed()) or "none"
        raise ParityUsageError(f"parity needs at least two backends, got {chosen or 'none'} "
                               f"(installed: {found}); install more with: pip install 'refnets[all]'")
    return chosen


def _canonical_weights(model: S.ModelSpec, weights, seed: int, dtype: str) -> W.Weights:
    if weights is None:
        return W.init(model, seed=seed, dtype=dtype)
    loaded = W.load(weights) if isinstance(weights, str) else dict(weights)
    W.check(refnets.param_shapes(model), loaded)
    return W.cast(loaded, dtype)


def run(model: Union[str, S.ModelSpec], backends: Optional[Sequence[str]] = None, reference: Optional[str] = None,
        batch: int = 2, input_shape=None, dtype: str = "float32", seed: int = 0, rtol: Optional[float] = None,
        atol: Optional[float] = None, weights=None, save_weights: Optional[str] = None, layers: bool = False,
        options: Optional[dict] = None, progress: Optional[Progress] = None) -> ParityResult:
    """Run `model` in every backend on the same weights and input and compare each
    with the reference (the first backend, or `reference`). Raises one of
    USAGE_ERRORS for bad arguments or a missing framework. `weights` is a
    canonical mapping or a .safetensors/.npz path; default: seeded init."""
    say = progress or (lambda _msg: None)
    if dtype not in DTYPES:
        raise ParityUsageError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if batch < 1:
        raise ParityUsageError(f"batch must be at least 1, got {batch}")
    spec = _resolve_model(model, input_shape, options)
    refnets.infer(spec)  # input too small: fail before importing anything
    chosen = _resolve_backends(backends, reference)
    default_rtol, default_atol = tolerance(spec.name, dtype)
    result = ParityResult(model=spec.name, backends=chosen, reference=chosen[0], dtype=dtype,
                          input_shape=tuple(spec.input_shape), batch=batch, seed=seed,
                          rtol=default_rtol if rtol is None else rtol, atol=default_atol if atol is None else atol,
                          options=dict(spec.options))
    canonical = _canonical_weights(spec, weights, seed, dtype)
    if save_weights:
        W.save(save_weights, canonical)
    impls = _import_backends(result, chosen, say)
    nets = _build_and_load(result, spec, impls, canonical, say)
    x = np.random.default_rng(seed + 1).standard_normal((batch,) + tuple(spec.input_shape)).astype(dtype)
    outputs = _forward_all(result, impls, nets, x, say)
    _compare_all(result, outputs)
    if layers or not result.passed:
        _localise_all(result, spec, impls, nets, x, say)
    return result


def _import_backends(result: ParityResult, chosen: List[str], say: Progress) -> Dict[str, object]:
    impls = {}
    for name in chosen:
        say(f"importing {name}")
        with _timed(result, "import", name):
            impls[name] = B.get(name)
        result.versions.update(impls[name].versions())
    result.versions.update({"python": platform.python_version(), "numpy": np.__version__,
                            "refnets": refnets.__version__, "platform": sys.platform})
    return impls


def _build_and_load(result, spec, impls, canonical, say) -> Dict[str, object]:
    nets = {}
    for name, impl in impls.items():
        say(f"building {spec.name} in {name}")
        with _timed(result, "build", name):
            nets[name] = impl.build(spec, dtype=result.dtype)
        result.param_counts[name] = impl.count_params(nets[name])
        say(f"setting weights in {name}")
        with _timed(result, "weights", name):
            impl.set_weights(nets[name], canonical)
    return nets


def _forward_all(result, impls, nets, x, say) -> Dict[str, np.ndarray]:
    outputs = {}
    for name, impl in impls.items():
        say(f"forward in {name}")
        with _timed(result, "forward", name):
            outputs[name], _ = impl.forward(nets[name], x)
    return outputs


def _compare_all(result: ParityResult, outputs: Dict[str, np.ndarray]) -> None:
    ref = outputs[result.reference]
    result.results[result.reference] = BackendResult(result.reference)
    for name in result.backends[1:]:
        with _timed(result, "compare", name):
            result.results[name] = BackendResult(name, compare(outputs[name], ref, result.rtol, result.atol))


def _localise_all(result, spec, impls, nets, x, say) -> None:
    paths = capture_paths(spec)
    say(f"capturing {len(paths)} node outputs in {result.reference}")
    with _timed(result, "localise", result.reference):
        _, ref_acts = impls[result.reference].forward(nets[result.reference], x, capture=paths)
    for name in result.backends[1:]:
        say(f"capturing {len(paths)} node outputs in {name}")
        with _timed(result, "localise", name):
            _, acts = impls[name].forward(nets[name], x, capture=paths)
            result.results[name].localisation = localise(spec, ref_acts, acts, result.rtol, result.atol)
            del acts  # one backend's node outputs at a time beside the reference's
