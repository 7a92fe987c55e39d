"""The inference comparison's steps, shared by `parity.run` and `parity.run_against`:
import the backends, build each model and load the weights, one forward each,
compare with the reference, localise per node. The result they fill is
`ParityResult`."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import refnets
from refnets import backends as B

from .header import Progress, RunHeader, timed_into
from .localise import Localisation, capture_paths, localise
from .metrics import Comparison, compare


@dataclass
class BackendResult:
    backend: str
    comparison: Optional[Comparison] = None  # None for the reference
    localisation: Optional[Localisation] = None


@dataclass(kw_only=True)
class ParityResult(RunHeader):
    backends: List[str]
    results: Dict[str, BackendResult] = field(default_factory=dict)
    timings: Dict[str, Dict[str, float]] = field(default_factory=dict)  # phase -> backend -> seconds
    param_counts: Dict[str, tuple] = field(default_factory=dict)
    against: Optional[str] = None  # a zoo run (`run_against`): the zoo, whose model is the reference
    zoo_model: Optional[str] = None  # the zoo's own name for it
    native: Optional[str] = None  # a verified conversion: the user's MODULE:CALLABLE (framework), the reference
    localised_against: Optional[str] = None  # the backend per-node captures were compared with, when not the reference

    @property
    def passed(self) -> bool:
        return all(r.comparison is None or r.comparison.passed for r in self.results.values())

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def timed(result, phase: str, key: str):
    """Times a block into `result.timings[phase][key]`."""
    return timed_into(result.timings, phase, key)


def environment_versions() -> Dict[str, str]:
    return {"python": platform.python_version(), "numpy": np.__version__, "refnets": refnets.__version__,
            "platform": sys.platform}


def import_backends(result, chosen: List[str], say: Progress) -> Dict[str, object]:
    impls = {}
    for name in chosen:
        say(f"importing {name}")
        with timed(result, "import", name):
            impls[name] = B.get(name, tf32=result.tf32)
        result.versions.update(impls[name].versions())
        if impls[name].device != "cpu":
            result.devices[name] = impls[name].describe_device()
    result.versions.update(environment_versions())
    return impls


def build_and_load(result, spec, impls, canonical, say: Progress) -> Dict[str, object]:
    nets = {}
    for name, impl in impls.items():
        say(f"building {spec.name} in {name}")
        with timed(result, "build", name):
            nets[name] = impl.build(spec, dtype=result.dtype)
        result.param_counts[name] = impl.count_params(nets[name])
        say(f"setting weights in {name}")
        with timed(result, "weights", name):
            impl.set_weights(nets[name], canonical)
    return nets


def forward_all(result, impls, nets, x, say: Progress) -> Dict[str, np.ndarray]:
    outputs = {}
    for name, impl in impls.items():
        say(f"forward in {name}")
        with timed(result, "forward", name):
            outputs[name], _ = impl.forward(nets[name], x)
    return outputs


def compare_all(result: ParityResult, outputs: Dict[str, np.ndarray]) -> None:
    ref = outputs[result.reference]
    result.results[result.reference] = BackendResult(result.reference)
    for name in result.backends[1:]:
        with timed(result, "compare", name):
            result.results[name] = BackendResult(name, compare(outputs[name], ref, result.rtol, result.atol))


def localise_all(result: ParityResult, spec, impls, nets, x, say: Progress, reference: Optional[str] = None) -> None:
    """Every node's output in the reference (or in backend `reference`) and each
    other backend, compared in execution order; one backend's captures at a time
    beside the reference's."""
    reference = reference or result.reference
    paths = capture_paths(spec)
    say(f"capturing {len(paths)} node outputs in {reference}")
    with timed(result, "localise", reference):
        _, ref_acts = impls[reference].forward(nets[reference], x, capture=paths)
    for name in [b for b in result.backends if b in impls and b != reference]:
        say(f"capturing {len(paths)} node outputs in {name}")
        with timed(result, "localise", name):
            _, acts = impls[name].forward(nets[name], x, capture=paths)
            result.results[name].localisation = localise(spec, ref_acts, acts, result.rtol, result.atol)
            del acts
