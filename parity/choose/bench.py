"""`--bench`: speed and memory of each backend, measured alike.

Every backend runs in a fresh worker process of its own (its configured
interpreter, else this one), one backend at a time, with the same thread
settings (THREAD_VARIABLES set to --threads in its environment). Inside the
worker (`refnets.workers.timing`, so the pipe is not in the figures):

    import        seconds to import the backend's framework (once: a fresh process)
    build         seconds to build the model (BUILD_REPEATS builds)
    forward       inference latency per batch size, after `warmup` untimed calls,
                  `repeats` timed ones (throughput = batch / median latency)
    step          with --train: one optimiser step (forward, backward, SGD update)
    peak memory   the worker's ru_maxrss at the end

Each figure keeps all its repeats: the report gives the median and the spread.
The machine's load over each backend's measurement is recorded (`machine`).
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import refnets
from refnets import backends as B
from refnets import specfile, workers

from ..engine.config import canonical_weights, check_dtype, seeded_input
from ..engine.header import Progress, progress_or_quiet
from ..training.common import fewest_batchnorm_values, num_classes_of, seeded_batch
from . import machine

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "MXNET_CPU_WORKER_NTHREADS")
DEFAULT_BATCHES = (1, 16)
DEFAULT_REPEATS = 10
WARMUP = 2
BUILD_REPEATS = 3
STEP_LR = 2.0 ** -10


@dataclass
class BackendBench:
    backend: str
    import_seconds: float
    build: List[float]  # seconds of each build
    forward: Dict[int, List[float]]  # batch size -> seconds of each timed forward
    step: Dict[int, List[float]]  # batch size -> seconds of each timed training step (--train)
    peak_rss_bytes: int
    load: machine.Load
    versions: Dict[str, str]
    notes: List[str] = field(default_factory=list)


@dataclass
class BenchResult:
    model: str
    dtype: str
    batches: List[int]
    repeats: int
    warmup: int
    threads: int
    train: bool
    machine: Dict[str, object]
    backends: Dict[str, BackendBench] = field(default_factory=dict)
    failures: Dict[str, str] = field(default_factory=dict)  # backend -> why it could not be measured

    @property
    def exit_code(self) -> int:
        return 2 if self.failures else 0


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> float:
    """(max - min) / median of the repeats."""
    mid = median(values)
    return (max(values) - min(values)) / mid if mid else 0.0


def thread_env(threads: int) -> Dict[str, str]:
    return {name: str(threads) for name in THREAD_VARIABLES}


def bench_worker(label: str, threads: int) -> workers.WorkerBackend:
    """A fresh worker for backend `label` (not the pooled one: its import time and
    peak memory are this measurement's alone)."""
    configured = workers.config.interpreters().get(B.parse_label(label)[0])
    python, source = (configured.python, configured.source) if configured else (sys.executable, "--bench")
    return workers.WorkerBackend(label, python, source, env=thread_env(threads))


def run_bench(model, backends: Sequence[str], batches: Sequence[int] = DEFAULT_BATCHES,
              repeats: int = DEFAULT_REPEATS, warmup: int = WARMUP, threads: int = 1, train: bool = False,
              dtype: str = "float32", seed: int = 0, weights=None,
              progress: Optional[Progress] = None) -> BenchResult:
    """Measures `model` (a ModelSpec) in each of `backends`; `weights`: canonical
    weights (None: seeded)."""
    say = progress_or_quiet(progress)
    check_dtype(dtype)
    infos = refnets.infer(model)
    result = BenchResult(model.name, dtype, list(batches), repeats, warmup, threads, train, machine.describe())
    canonical = canonical_weights(model, weights, seed, dtype)
    for label in backends:
        say(f"benchmarking {model.name} in {label} (a fresh worker, {threads} thread(s))")
        backend = bench_worker(label, threads)
        try:
            result.backends[label] = bench_one(backend, model, infos, canonical, result, seed)
        except (workers.BackendFailure, workers.WorkerError, B.CapabilityError) as err:
            result.failures[label] = str(err)
            say(f"{label} failed: {str(err).splitlines()[0]}")
        finally:
            backend.close()
    return result


def bench_one(backend: workers.WorkerBackend, model, infos, canonical, result: BenchResult, seed: int) -> BackendBench:
    hello = backend.hello()
    meter = machine.LoadMeter()
    meter.start(backend.request(None, "resources")[0]["cpu_seconds"])
    build = backend.request(None, "time_build", spec=specfile.to_json(model), dtype=result.dtype,
                            repeats=min(BUILD_REPEATS, result.repeats))[0]
    net = backend.build(model, result.dtype)
    backend.set_weights(net, canonical)
    forward = {}
    for batch in result.batches:
        x = seeded_input(seed, batch, model.input_shape, result.dtype)
        forward[batch] = backend.request(net, "time_forward", {"x": x}, net=net.ident, repeats=result.repeats,
                                         warmup=result.warmup)[0]
    step, notes = {}, []
    if result.train:
        step, notes = time_steps(backend, net, model, infos, result, seed)
    used = backend.request(None, "resources")[0]
    return BackendBench(backend.label, hello["import_seconds"], build, forward, step, int(used["peak_rss_bytes"]),
                        meter.stop(used["cpu_seconds"]), backend.versions(), notes)


def time_steps(backend, net, model, infos, result: BenchResult, seed: int):
    """batch -> seconds of each training step, and notes on the batch sizes skipped."""
    trainer = backend.Trainer(net, "sgd", STEP_LR)
    classes = num_classes_of(model, infos)
    step, notes = {}, []
    for batch in result.batches:
        fewest = fewest_batchnorm_values(infos, batch)
        if fewest is not None and fewest[0] < 2:
            notes.append(f"no training step at batch {batch}: BatchNorm '{fewest[1]}' would normalise "
                         f"{fewest[0]} value per channel")
            continue
        x, labels = seeded_batch(seed, 1, batch, model.input_shape, result.dtype, classes)
        step[batch] = backend.request(trainer.handle, "time_step", {"x": x, "labels": labels},
                                      trainer=trainer.handle.ident, repeats=result.repeats, warmup=result.warmup)[0]
    return step, notes
