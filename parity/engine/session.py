"""The inference comparison's steps, shared by `parity.run` and `parity.run_against`:
import the backends, build each model and load the weights, one forward each,
compare with the reference, localise per node. The result they fill is
`ParityResult`.

A backend whose worker process dies or overruns its time (`BackendFailure`) is
recorded in `ParityResult.failures` and left out of the later steps; the others
still run and are compared (with the next backend as the reference when the
reference failed). Such a run exits 2, an environment error, never 1: a crash
is not a disagreement, and a run with a missing backend is not a pass."""

from __future__ import annotations

import platform
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import refnets
from refnets import backends as B
from refnets import workers
from refnets.memory import release_freed_memory

from .header import Progress, RunHeader, timed_into
from .localise import Localisation, capture_paths, summarise
from .lockstep import NodeRendezvous
from .metrics import Comparison, compare
from .sidebyside import run_side_by_side


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
    failures: Dict[str, str] = field(default_factory=dict)  # backend -> why it failed (its worker died, timed out)

    @property
    def agreed(self) -> bool:
        """Every backend that ran agrees with the reference."""
        return all(r.comparison is None or r.comparison.passed for r in self.results.values())

    @property
    def passed(self) -> bool:
        return self.agreed and not self.failures

    @property
    def exit_code(self) -> int:
        """0 all agree, 1 some disagree, 2 some backend failed (an environment
        error: the run is incomplete, whatever the others did)."""
        return 2 if self.failures else 0 if self.passed else 1

    def running(self, names) -> List[str]:
        """`names` without the backends that failed."""
        return [name for name in names if name not in self.failures]


def timed(result, phase: str, key: str):
    """Times a block into `result.timings[phase][key]`."""
    return timed_into(result.timings, phase, key)


def environment_versions() -> Dict[str, str]:
    return {"python": platform.python_version(), "numpy": np.__version__, "refnets": refnets.__version__,
            "platform": sys.platform}


@contextmanager
def isolated(result, name: str, say: Progress):
    """Runs a step of backend `name`; if its worker fails (`BackendFailure`), the
    failure is recorded in `result.failures` and the run goes on without it.
    Results without `failures` (the training runs) let it propagate: exit 2."""
    if not hasattr(result, "failures"):
        yield
        return
    try:
        yield
    except workers.BackendFailure as failure:
        result.failures[name] = str(failure)
        say(f"{failure.summary()}: going on without {name}")


def import_backends(result, chosen: List[str], say: Progress) -> Dict[str, object]:
    """The backends' implementations; workers, if any, all started first so their
    frameworks import side by side."""
    workers.prestart(chosen, tf32=result.tf32)
    impls = {}
    for name in chosen:
        say(f"importing {name}")
        with isolated(result, name, say), timed(result, "import", name):
            impls[name] = B.get(name, tf32=result.tf32)
        if name not in impls:
            continue
        result.versions.update(impls[name].versions())
        if impls[name].device != "cpu":
            result.devices[name] = impls[name].describe_device()
    result.versions.update(environment_versions())
    return impls


def each_backend(impls, names, step) -> None:
    """`step(name)` for every backend in `names`: side by side when all of them
    live in worker processes (the parent only waits on their pipes, and their
    frameworks use cores of their own), else one after another, the memory each
    step freed handed back before the next (`refnets.memory`: glibc would keep it
    under the next framework's peak)."""
    names = list(names)
    if len(names) > 1 and all(isinstance(impls[name], workers.WorkerBackend) for name in names):
        run_side_by_side({name: (lambda name=name: step(name)) for name in names})
    else:
        for name in names:
            step(name)
            release_freed_memory()


def build_all(result, spec, impls, say: Progress) -> Dict[str, object]:
    """Each backend's native model (Gluon's and Keras's own initial weights)."""
    nets = {}

    def build(name: str) -> None:
        with isolated(result, name, say):
            say(f"building {spec.name} in {name}")
            with timed(result, "build", name):
                net = impls[name].build(spec, dtype=result.dtype)
            result.param_counts[name] = impls[name].count_params(net)
            nets[name] = net

    each_backend(impls, impls, build)
    return {name: nets[name] for name in impls if name in nets}


def load_all(result, impls, nets, canonical, say: Progress) -> None:
    """The canonical weights into every built model; a backend that fails is left out."""
    def load(name: str) -> None:
        with isolated(result, name, say):
            say(f"setting weights in {name}")
            with timed(result, "weights", name):
                impls[name].set_weights(nets[name], canonical)

    for name in nets:  # one at a time, even in workers: each holds the weights twice while it sets them
        load(name)
        release_freed_memory()
    for name in [n for n in nets if n in getattr(result, "failures", {})]:
        del nets[name]


def build_and_load(result, spec, impls, canonical, say: Progress) -> Dict[str, object]:
    nets = build_all(result, spec, impls, say)
    load_all(result, impls, nets, canonical, say)
    return nets


def forward_all(result, impls, nets, x, say: Progress) -> Dict[str, np.ndarray]:
    outputs = {}

    def forward(name: str) -> None:
        say(f"forward in {name}")
        with isolated(result, name, say), timed(result, "forward", name):
            outputs[name], _ = impls[name].forward(nets[name], x)

    each_backend(impls, [n for n in impls if n in nets], forward)
    return {name: outputs[name] for name in impls if name in outputs}


def compare_all(result: ParityResult, outputs: Dict[str, np.ndarray]) -> None:
    """Each backend's output against the reference's; when the reference failed,
    against the first backend that did not (`result.reference` then names it)."""
    ran = [name for name in result.backends if name in outputs]
    if not ran:
        return
    if result.reference not in outputs:
        result.reference = ran[0]
    ref = outputs[result.reference]
    result.results[result.reference] = BackendResult(result.reference)
    for name in ran:
        if name != result.reference:
            with timed(result, "compare", name):
                result.results[name] = BackendResult(name, compare(outputs[name], ref, result.rtol, result.atol))


def localise_all(result: ParityResult, spec, impls, nets, x, say: Progress, reference: Optional[str] = None) -> None:
    """Every node's output in the reference (or in backend `reference`) and in each
    other backend, compared node by node while the two run side by side
    (`lockstep`): no backend's captures are held whole. The reference runs once
    beside each other backend: three frameworks' forwards at once were no faster in
    one process, and held more in both ways (resnet50v2: ~135 MiB in one process,
    ~100 MiB over three workers)."""
    reference = reference or result.reference
    if reference not in nets or reference in result.failures:
        return
    others = [b for b in result.running(result.backends) if b in nets and b in result.results and b != reference]
    _, localisations = localise_in_pairs(result, spec, impls, nets, x, say, reference, others)
    for other, localisation in localisations.items():
        result.results[other].localisation = localisation


def localise_in_pairs(result: ParityResult, spec, impls, nets, x, say: Progress, reference: str, others: List[str],
                      note: str = "") -> Tuple[Dict[str, np.ndarray], Dict[str, Localisation]]:
    """The reference beside each of `others` in turn (`localise_side_by_side`), until
    the reference fails: each backend's first capturing forward's output, and each
    whole localisation."""
    paths = capture_paths(spec)
    outputs: Dict[str, np.ndarray] = {}
    localisations: Dict[str, Localisation] = {}
    for other in others:
        if reference in result.failures:
            break
        say(f"capturing {len(paths)} node outputs in {reference} and {other} side by side, comparing node by "
            f"node{note}")
        pair_outputs, localisation = localise_side_by_side(result, spec, impls, nets, x, say, reference, other, paths)
        for name, out in pair_outputs.items():
            outputs.setdefault(name, out)
        if localisation is not None:
            localisations[other] = localisation
    return outputs, localisations


def forward_and_localise_all(result: ParityResult, spec, impls, nets, x, say: Progress) -> Dict[str, np.ndarray]:
    """The forwards and the localisation in one pass, for a run that asked for the
    localisation up front (`layers`): each backend's forward is its capturing one,
    the reference's beside each other backend's in turn (`localise_all`), and the
    outputs compared are those forwards' own. That spares the plain forward of
    every backend whose capture computes what its plain forward does (the
    catalog's `capture_is_plain_forward`; not Gluon's). What the pairs could not
    give -- the output of a backend whose pair did not run because the reference
    failed, or the localisation against the reference that replaces it -- comes
    from the ordinary steps afterwards.
    Returns the outputs; the comparisons and localisations are in `result`."""
    reference = result.reference
    others = [b for b in nets if b != reference] if reference in nets else []
    outputs, localisations = localise_in_pairs(result, spec, impls, nets, x, say, reference, others,
                                               note=" (their forwards)")
    for name in [n for n in outputs if not B.catalog.BACKENDS[impls[n].name].capture_is_plain_forward]:
        del outputs[name]  # its output is judged on its ordinary path (Gluon's hybridized graph): a plain forward
    missing = {name: net for name, net in nets.items() if name not in outputs and name not in result.failures}
    outputs.update(forward_all(result, impls, missing, x, say))
    outputs = {name: outputs[name] for name in impls if name in outputs and name not in result.failures}
    compare_all(result, outputs)
    if result.reference != reference:  # the reference failed: localised against the one that replaces it
        localise_all(result, spec, impls, nets, x, say)
        return outputs
    for name, localisation in localisations.items():
        if name in result.results:
            result.results[name].localisation = localisation
    return outputs


def localise_side_by_side(result: ParityResult, spec, impls, nets, x, say: Progress, reference: str,
                          other: str, paths: List[str]) -> Tuple[Dict[str, np.ndarray], Optional[Localisation]]:
    """One rendezvous of the reference and `other`: the outputs of the two capturing
    forwards that ended, and `other`'s localisation (None unless every node of it
    was compared)."""
    parties = [reference, other]
    rendezvous = NodeRendezvous(parties, reference, paths, result.rtol, result.atol)
    outputs: Dict[str, np.ndarray] = {}

    def capture(name: str):
        def job() -> None:
            with isolated(result, name, say), timed(result, "localise", name):
                outputs[name] = impls[name].stream(nets[name], x, paths, rendezvous.sink(name))
        return job

    def done(name: str, error: Optional[BaseException]) -> None:
        failed = error is not None or name in result.failures
        rendezvous.finish(name, failed=failed)
        if not failed:
            rendezvous.help_until_the_others_end(name)

    run_side_by_side({name: capture(name) for name in parties}, on_done=done, on_interrupt=rendezvous.close)
    outputs = {name: out for name, out in outputs.items() if name not in result.failures}
    if rendezvous.compared_all(other):
        return outputs, summarise(spec, rendezvous.results[other], paths)
    return outputs, None
