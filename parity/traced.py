"""`parity MODULE:CALLABLE --from FRAMEWORK`: a verified conversion. The user's
native model is traced into the spec; the spec is built in every chosen backend
with the model's own weights; every backend is compared with the user's model
itself (the reference, "yours"). Per-node localisation compares the backends with
the spec built in the user's framework (the user's model has no per-node
captures by spec path), and the report says so."""

from __future__ import annotations

from typing import Optional, Sequence

import refnets
from refnets import backends as B
from refnets.trace.user import load_and_trace

from .engine.config import (ParityUsageError, check_backends, check_batch, check_dtype, installed_backends,
                            resolve_tolerance, seeded_input)
from .engine.header import Progress, progress_or_quiet
from .engine.session import ParityResult, build_and_load, compare_all, forward_all, import_backends, localise_all, timed
from .engine.tolerances import tolerance

YOURS = "yours"


def traced_backends(names: Optional[Sequence[str]], framework: str):
    """The backends the traced spec is built in (default: every installed framework)."""
    chosen = check_backends(names if names else installed_backends())
    if not chosen:
        raise ParityUsageError("no backend to build the traced model in: install one with pip install 'refnets[all]'")
    return chosen


def run_traced(reference: str, framework: str, backends: Optional[Sequence[str]] = None, batch: int = 2,
               input_shape=None, dtype: str = "float32", seed: int = 0, rtol: Optional[float] = None,
               atol: Optional[float] = None, layers: bool = False, progress: Optional[Progress] = None,
               traced=None, tf32: bool = False) -> ParityResult:
    """Trace the user's `framework` model named by `reference` (MODULE:CALLABLE, a
    model or a factory), build it in each backend and compare with the model itself."""
    say = progress_or_quiet(progress)
    check_dtype(dtype)
    check_batch(batch)
    chosen = traced_backends(backends, framework)
    say(f"tracing {reference} ({framework})")
    user = traced or load_and_trace(reference, framework, input_shape, dtype)
    spec = user.traced.spec
    refnets.infer(spec)
    rtol, atol = resolve_tolerance(tolerance(spec.name, dtype), rtol, atol)
    result = ParityResult(model=spec.name, backends=[YOURS] + chosen, reference=YOURS, dtype=dtype,
                          input_shape=tuple(spec.input_shape), batch=batch, seed=seed, rtol=rtol, atol=atol,
                          native=f"{user.reference} ({framework})", tf32=tf32)
    impls = import_backends(result, chosen, say)
    result.versions.update(B.get_reader(framework).versions())
    nets = build_and_load(result, spec, impls, user.traced.weights, say)
    x = seeded_input(seed, batch, spec.input_shape, dtype)
    outputs = forward_all(result, impls, nets, x, say)
    say(f"forward in your {framework} model")
    with timed(result, "forward", YOURS):
        outputs[YOURS], _ = B.get_reader(framework).forward(user.native, x)
    compare_all(result, outputs)
    ran = [name for name in result.running(chosen) if name in outputs]
    if (layers or not result.agreed) and len(ran) > 1:
        result.localised_against = framework if framework in ran else ran[0]
        localise_all(result, spec, impls, nets, x, say, reference=result.localised_against)
    return result
