"""`parity.run_port`: does a user's own native model (a hand-written port) compute
what the reference computes?

The reference is our model built in one of our backends (default: the port's own
framework, so no cross-framework rounding enters). The canonical weights are
mapped onto the port structurally (`port_match`), both run on the same seeded
input, and the outputs are compared with the parity tolerances. On a failure every
mapped pair of layers is compared in the reference's execution order, the first
divergent one is named, and `port_diagnose` says what kind of difference it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import numpy as np
import refnets
from refnets import backends as B
from refnets import spec as S
from refnets.native import PortModelError
from refnets.trace import UntraceableError, trace

from ..engine.config import (canonical_weights, check_dtype, resolve_model, resolve_tolerance,
                             seeded_input)
from ..engine.header import Progress, RunHeader, progress_or_quiet
from ..engine.localise import capture_paths
from ..engine.metrics import Comparison, compare
from ..engine.tolerances import tolerance
from . import match as matching
from refnets.userload import load_model, user_frame
from .diff import StructuralDiff
from .graph_match import graph_assignment, graph_mapping
from .diagnose import Diagnosis, Evidence, diagnose, input_agrees
from .match import Mapping, assignment, reference_layers, same_shape_layers, swap


@dataclass(frozen=True)
class LayerPair:
    reference: str
    port: str
    kind: str
    comparison: Comparison


@dataclass(kw_only=True)
class PortResult(RunHeader):
    port: str
    port_backend: str
    mapping: Mapping = field(default_factory=Mapping)
    unused: List[str] = field(default_factory=list)  # port layers with parameters never called
    comparison: Optional[Comparison] = None  # None: the weights could not be mapped
    layers: List[LayerPair] = field(default_factory=list)
    first_divergent: Optional[LayerPair] = None
    reassigned: int = 0  # same-shaped layers the first mapping confused, settled by their inputs
    diagnosis: Optional[Diagnosis] = None
    timings: Dict[str, float] = field(default_factory=dict)
    diff: Optional[StructuralDiff] = None  # the structural diff when the port could be traced
    matched_by: str = "graph position"
    native_reference: Optional[str] = None  # port against port: the reference's MODULE:CALLABLE (framework)
    reference_check: Optional[Comparison] = None  # its traced spec, built in `reference`, against the model itself

    @property
    def passed(self) -> bool:
        structure = self.diff is None or not self.diff.affects_inference
        reference = self.reference_check is None or self.reference_check.passed
        return structure and reference and self.mapping.complete and self.comparison is not None and self.comparison.passed

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def run_port(model: Union[str, S.ModelSpec], port, port_backend: str = "torch", reference: Optional[str] = None,
             batch: int = 2, input_shape=None, dtype: str = "float32", seed: int = 0, rtol: Optional[float] = None,
             atol: Optional[float] = None, weights=None, layers: bool = False, options: Optional[dict] = None,
             progress: Optional[Progress] = None, native_reference=None) -> PortResult:
    """Check the port (see `refnets.userload.load_model`) against our `model`, or
    against another native model (`native_reference`: a `refnets.trace.user.UserModel`,
    whose traced spec and weights are `model` and `weights`). Raises one of
    parity.USAGE_ERRORS for bad arguments, a missing framework or a port that
    cannot be loaded or run."""
    say = progress_or_quiet(progress)
    check_dtype(dtype)
    spec = resolve_model(model, input_shape, options)
    refnets.infer(spec)
    reference = B.check_name(reference or port_backend)
    B.check_name(port_backend)
    rtol, atol = resolve_tolerance(tolerance(spec.name, dtype), rtol, atol)
    result = PortResult(model=spec.name, port=port if isinstance(port, str) else getattr(port, "__name__", repr(port)),
                        port_backend=port_backend, reference=reference, dtype=dtype,
                        input_shape=tuple(spec.input_shape), batch=batch, seed=seed,
                        rtol=rtol, atol=atol,
                        options=dict(spec.options))
    canonical = canonical_weights(spec, weights, seed, dtype)
    x = seeded_input(seed, batch, spec.input_shape, dtype)
    adapter = B.get_reader(port_backend)
    say(f"loading the port {result.port}")
    user = _timed(result, "load", lambda: _load(port, adapter, dtype))
    result.versions.update(adapter.versions())
    say("tracing the port and mapping the reference weights onto it by graph position")
    user_layers = _timed(result, "map", lambda: _user_layers(adapter, user, x))
    traced = _timed(result, "map", lambda: _trace_port(result, user, spec))
    if traced is None:
        result.mapping = matching.match(reference_layers(spec), user_layers)
    else:
        result.mapping, result.diff = graph_mapping(spec, traced, user_layers)
    result.unused = adapter.unused(user, [u.name for u in user_layers])
    if not result.mapping.complete or (result.diff is not None and not result.diff.copyable):
        return result
    adapter.set_params(user, graph_assignment(result.mapping, canonical, dtype) if traced is not None
                       else assignment(result.mapping, canonical))
    impl = B.get(reference)
    result.versions.update(impl.versions())
    say(f"building {spec.name} in {reference}")
    net = _timed(result, "build", lambda: _reference_net(impl, spec, dtype, canonical))
    say("forward in the reference and the port")
    ref_out, _ = _timed(result, "forward", lambda: impl.forward(net, x))
    if native_reference is not None:
        result.native_reference = f"{native_reference.reference} ({native_reference.framework})"
        native_out, _ = B.get_reader(native_reference.framework).forward(native_reference.native, x)
        result.reference_check = compare(ref_out, native_out, result.rtol, result.atol)
    user_out, _ = _timed(result, "forward_port", lambda: _user_forward(adapter, user, x))
    result.comparison = compare(user_out, ref_out, result.rtol, result.atol)
    if layers or not result.passed:
        say("comparing every mapped layer")
        _timed(result, "localise", lambda: _localise(result, spec, impl, net, adapter, user, x, canonical, ref_out))
    return result


def _trace_port(result: PortResult, user, spec: S.ModelSpec):
    """The port traced at the reference's input shape, or None (said in
    `matched_by`) where its graph holds an op the vocabulary lacks: then the
    weights are matched by execution order, kind and shapes instead."""
    try:
        return trace(user, result.port_backend, spec.input_shape, dtype=result.dtype)
    except UntraceableError as err:
        result.matched_by = f"execution order, kind and shapes (the port could not be traced: {err})"
        return None


def _load(port, adapter, dtype: str):
    with adapter.loading(dtype):
        return adapter.prepare(load_model(port, adapter), dtype)


def _timed(result: PortResult, phase: str, action):
    start = time.perf_counter()
    value = action()
    result.timings[phase] = result.timings.get(phase, 0.0) + time.perf_counter() - start
    return value


def _user_layers(adapter, user, x):
    try:
        found = adapter.layers(user, x)
    except PortModelError:
        raise
    except Exception as err:
        where = user_frame(err)
        raise PortModelError(f"the port failed on an input of shape {x.shape} (channels-first): "
                             f"{type(err).__name__}: {err}{' (' + where + ')' if where else ''}") from err
    fused = [f"'{u.name}' ({u.config['activation']})" for u in found if u.config.get("activation", "linear")
             not in ACTIVATIONS]
    if fused:
        raise PortModelError(f"fused activation(s) the checker cannot reproduce: {', '.join(fused)}; supported: "
                             f"{', '.join(ACTIVATIONS)}. The reference ends in logits: build the port without a "
                             f"final softmax (keras.applications: classifier_activation=None)")
    return found


ACTIVATIONS = {"linear": lambda a: a, "relu": lambda a: np.maximum(a, 0),
               "sigmoid": lambda a: 1 / (1 + np.exp(-a)), "tanh": np.tanh}


def _as_port_output(ref_value: np.ndarray, user) -> np.ndarray:
    """The reference node's output as the port layer gives it: after the layer's
    fused activation (Keras `Conv2D(activation=...)`, Gluon `Conv2D(activation=...)`)."""
    return ACTIVATIONS[user.config.get("activation", "linear")](ref_value).astype(ref_value.dtype)


def _user_forward(adapter, user, x, capture=()):
    try:
        return adapter.forward(user, x, capture)
    except PortModelError:
        raise
    except Exception as err:
        raise PortModelError(f"the port failed with mapped weights: {type(err).__name__}: {err}") from err


def _reference_net(impl, spec: S.ModelSpec, dtype: str, canonical):
    net = impl.build(spec, dtype=dtype)
    impl.set_weights(net, canonical)
    return net


def _localise(result: PortResult, spec, impl, net, adapter, user, x, canonical, ref_out) -> None:
    """Compare every mapped pair; re-assign same-shaped layers by their inputs
    (`_repair`), then name the first divergent pair and diagnose it."""
    _, ref_acts = impl.forward(net, x, capture=capture_paths(spec))

    def rerun(edited: S.ModelSpec, path: str) -> np.ndarray:
        return impl.forward(_reference_net(impl, edited, result.dtype, canonical), x, capture=[path])[1][path]

    while True:
        user_out, user_acts = _user_forward(adapter, user, x, [u.name for _, u in result.mapping.pairs])
        evidence = Evidence(spec, x, ref_acts, user_acts, result.mapping, canonical, result.rtol, result.atol, rerun)
        pairs = [LayerPair(r.path, u.name, r.kind, compare(user_acts[u.name][1], _as_port_output(ref_acts[r.path], u),
                                                           result.rtol, result.atol)) for r, u in result.mapping.pairs]
        first = next((i for i, p in enumerate(pairs) if not p.comparison.passed), None)
        if first is None or result.diff is not None or not _repair(result, evidence, first, adapter, user, canonical):
            break
    result.comparison = compare(user_out, ref_out, result.rtol, result.atol)
    result.layers, result.first_divergent = pairs, None if first is None else pairs[first]
    if first is not None:
        result.diagnosis = diagnose(evidence, *result.mapping.pairs[first])


def _repair(result: PortResult, evidence: Evidence, index: int, adapter, user, canonical) -> bool:
    """If the first divergent pair's port layer does not see the reference node's
    input but exactly one other same-shaped mapped layer does, the mapping confused
    them: swap the two, load their weights and say so."""
    ref, current = result.mapping.pairs[index]
    if input_agrees(evidence, ref, current):
        return False
    fits = [u for u in same_shape_layers(result.mapping, ref) if u.name != current.name
            and input_agrees(evidence, ref, u)]
    if len(fits) != 1:
        return False
    changed = swap(result.mapping, ref.path, fits[0])
    adapter.set_params(user, assignment(Mapping(pairs=changed), canonical))
    result.reassigned += 1
    return True
