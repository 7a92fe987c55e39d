"""Checks made before any work, so a bad number or a run that cannot fit in
memory is a usage error (exit 2) with a clear message, never a wrong verdict or a
MemoryError traceback half-way: the numeric flags, and the run's memory
estimated from the spec (refnets.shapes: no framework imported, nothing
allocated) against what the machine has available."""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from refnets import shapes
from refnets import spec as S

from .config import ParityUsageError, installed_backends, resolve_model

SKIP_MEMORY_ENV = "PARITY_SKIP_MEMORY_CHECK"


def _finite(value, flag: str, low: float, low_ok: bool, high: Optional[float] = None, high_ok: bool = False):
    if value is None:
        return
    text = f"{flag} must be a finite number"
    bounds = f"{'>=' if low_ok else '>'} {low:g}" + (f" and {'<=' if high_ok else '<'} {high:g}" if high is not None else "")
    if not math.isfinite(value) or (value < low if low_ok else value <= low) or \
            (high is not None and (value > high if high_ok else value >= high)):
        raise ParityUsageError(f"{text} {bounds}, got {value!r}")


def check_batch_flag(batch) -> None:
    """--batch: None (the mode's default), one size, or --bench's several."""
    sizes = () if batch is None else batch if isinstance(batch, tuple) else (batch,)
    if any(size < 1 for size in sizes):
        shown = ",".join(map(str, sizes))
        raise ParityUsageError(f"--batch must be at least 1, got {shown}")


def check_numbers(args) -> None:
    """The numeric flags of `python -m parity` (tolerances, batch, seed, learning
    rate, momentum, steps, worker timeout): each in its range, never NaN or inf."""
    _finite(args.rtol, "--rtol", 0, True)
    _finite(args.atol, "--atol", 0, True)
    check_batch_flag(args.batch)
    if args.seed < 0:
        raise ParityUsageError(f"--seed must be >= 0 (a numpy seed), got {args.seed}")
    if args.train_steps is not None and args.train_steps < 1:
        raise ParityUsageError(f"--train-steps must be a positive integer, got {args.train_steps}")
    _finite(args.lr, "--lr", 0, False)
    _finite(args.momentum, "--momentum", 0, True, 1, False)
    _finite(args.worker_timeout, "--worker-timeout", 0, False)


# ---------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs at least: `weights` (one copy), `input`, `activations`
    (every node's output, one backend, the whole batch), `peak_activation` (the
    largest node input + output), and `required` for the run as planned."""
    weights: int
    input: int
    activations: int
    peak_activation: int
    required: int


def estimate(spec: S.ModelSpec, batch: int, dtype: str, backends: int, kept: int = 0) -> MemoryEstimate:
    """A lower bound of the run's memory: canonical weights plus one native
    copy per backend, the input once plus once per backend, and either the
    largest single layer (a forward, `kept` 0) or `kept` copies of every
    activation (1: a backward pass keeps them, one backend at a time; 2: per-node
    localisation holds the reference's captures and another backend's).
    Framework overheads (libraries, workspaces) come on top."""
    size = np.dtype(dtype).itemsize
    infos = shapes.infer(spec)
    weights = sum(math.prod(shape) for shape in shapes.param_shapes(spec).values()) * size
    leaves = [i for i in infos.values() if not isinstance(i.node, S.Sequential)]
    acts = sum(math.prod(i.out_shape) for i in leaves) * batch * size
    peak = max((math.prod(i.in_shape) + math.prod(i.out_shape) for i in leaves), default=0) * batch * size
    x = math.prod(spec.input_shape) * batch * size
    required = weights * (1 + backends) + x * (1 + backends) + (kept * acts if kept else peak)
    return MemoryEstimate(weights=weights, input=x, activations=acts, peak_activation=peak, required=required)


def available_bytes() -> Optional[int]:
    """What this process can still allocate: MemAvailable (/proc/meminfo), capped by
    a cgroup limit and RLIMIT_AS where set; None where none can be read."""
    limits = [_meminfo_available(), _cgroup_left()]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    found = [v for v in limits if v is not None]
    return min(found) if found else None


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_left() -> Optional[int]:
    try:
        with open("/sys/fs/cgroup/memory.max") as handle:
            limit = handle.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as handle:
            used = int(handle.read().strip())
        return int(limit) - used + _cgroup_reclaimable()
    except (OSError, ValueError):
        return None


def _cgroup_reclaimable() -> int:
    """The cgroup's inactive page cache: counted in memory.current, given back on demand."""
    try:
        with open("/sys/fs/cgroup/memory.stat") as handle:
            for line in handle:
                key, _, value = line.partition(" ")
                if key == "inactive_file":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} PiB"


def check_memory(spec: S.ModelSpec, batch: int, dtype: str, backends: Sequence[str], kept: int,
                 available: Optional[int] = None) -> MemoryEstimate:
    """Refuse (ParityUsageError) a run whose estimated memory exceeds what is
    available, before anything is allocated; PARITY_SKIP_MEMORY_CHECK=1 skips it."""
    est = estimate(spec, batch, dtype, len(backends), kept)
    if os.environ.get(SKIP_MEMORY_ENV, "").strip() not in ("", "0"):
        return est
    available = available_bytes() if available is None else available
    if available is not None and est.required > available:
        what = f"every activation kept x {kept}" if kept else "the largest layer"
        raise ParityUsageError(
            f"{spec.name} at batch {batch}, input {'x'.join(map(str, spec.input_shape))}, {dtype}, in "
            f"{len(backends)} backends needs at least {human(est.required)} (weights {human(est.weights)} x "
            f"{1 + len(backends)}, input {human(est.input)} x {1 + len(backends)}, {what}: "
            f"{human(kept * est.activations if kept else est.peak_activation)}); "
            f"{human(available)} is available. Use a smaller --batch or --input-shape, or fewer backends "
            f"(if the estimate is wrong: {SKIP_MEMORY_ENV}=1)")
    return est


def check_run_memory(model, args, backends: Optional[Sequence[str]], batch: int, dtype: str, training: bool,
                     extra_models: int = 0) -> Optional[MemoryEstimate]:
    """`check_memory` for one command-line run: `model` a name, a spec file or a
    ModelSpec (None where it is only known later: skipped); `backends` the chosen
    labels (None: every installed one); `extra_models` the models that are not
    backends (a zoo's own model, a port). Training keeps every activation once,
    --layers twice (the captures of two backends)."""
    if model is None:
        return None
    spec = model if isinstance(model, S.ModelSpec) else resolve_model(model, args.input_shape, dict(args.option))
    count = len(backends) if backends else len(installed_backends())
    return check_memory(spec, batch, dtype, ["model"] * (count + extra_models), 2 if args.layers else int(training))
