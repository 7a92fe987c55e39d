"""`parity.run`: one architecture, the same weights and input in every chosen
backend, every backend compared with the reference, divergences localised."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import refnets
from refnets import spec as S
from refnets.memory import release_freed_memory
from refnets import weights as W

from .engine.config import (canonical_weights, check_batch, check_dtype, resolve_backends, resolve_model,
                            resolve_tolerance, seeded_input, seeded_weights_in_background)
from .engine.header import Progress, progress_or_quiet
from .engine.session import (ParityResult, build_all, compare_all, forward_all, forward_and_localise_all,
                             import_backends, load_all, localise_all)
from .engine.tolerances import tolerance
from .outputs import check_output_path


def run(model: Union[str, S.ModelSpec], backends: Optional[Sequence[str]] = None, reference: Optional[str] = None,
        batch: int = 2, input_shape=None, dtype: str = "float32", seed: int = 0, rtol: Optional[float] = None,
        atol: Optional[float] = None, weights=None, save_weights: Optional[str] = None, layers: bool = False,
        options: Optional[dict] = None, progress: Optional[Progress] = None, tf32: bool = False) -> ParityResult:
    """Run `model` in every backend on the same weights and input and compare each
    with the reference (the first backend, or `reference`). Raises one of
    USAGE_ERRORS for bad arguments or a missing framework. `weights` is a
    canonical mapping or a .safetensors/.npz path; default: seeded init.
    `backends` are names or `name:device` labels (`torch:cuda`); `tf32` allows TF32
    on the GPU ones (off by default: it breaks the float32 bar). `layers` localises
    every node even when all agree; each backend's forward is then its capturing
    one (Gluon's runs imperatively, as its hooks need), compared node by node."""
    say = progress_or_quiet(progress)
    check_dtype(dtype)
    check_batch(batch)
    spec = resolve_model(model, input_shape, options)
    refnets.infer(spec)  # input too small: fail before importing anything
    chosen = resolve_backends(backends, reference)
    rtol, atol = resolve_tolerance(tolerance(spec.name, dtype), rtol, atol)
    result = ParityResult(model=spec.name, backends=chosen, reference=chosen[0], dtype=dtype,
                          input_shape=tuple(spec.input_shape), batch=batch, seed=seed, rtol=rtol, atol=atol,
                          options=dict(spec.options), tf32=tf32)
    # Given weights are read and checked before anything is imported; seeded ones are
    # drawn on another core while the frameworks import.
    given = None if weights is None else canonical_weights(spec, weights, seed, dtype)
    seeded = seeded_weights_in_background(spec, seed, dtype) if given is None else None
    if save_weights:
        check_output_path(save_weights, "save_weights")
    impls = import_backends(result, chosen, say)
    nets = build_all(result, spec, impls, say)
    canonical = given if given is not None else seeded()
    del given
    if save_weights:
        W.save(save_weights, canonical)
    load_all(result, impls, nets, canonical, say)
    del canonical  # every backend holds its own copy now: not kept through the forwards and the localisation
    release_freed_memory()  # (each step's own memory went back after it: `session.each_backend`)
    x = seeded_input(seed, batch, spec.input_shape, dtype)
    if layers:  # asked for up front: the capturing forwards are the forwards
        forward_and_localise_all(result, spec, impls, nets, x, say)
        return result
    outputs = forward_all(result, impls, nets, x, say)
    compare_all(result, outputs)
    if not result.agreed:
        localise_all(result, spec, impls, nets, x, say)
    return result
