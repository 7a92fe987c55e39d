"""Shared helpers for `python -m benchmarks`: fresh-subprocess workers, timing
loops, memory readings. Imports no framework."""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

from .load import Meter, loadavg  # noqa: F401 (loadavg: re-exported for the sections)

MARK = "@@BENCHMARK-RESULT@@ "
LOAD_LOG: List[dict] = []  # the machine load around every worker since the section began (see load.py)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every child runs with the environment the keras backend would set itself, so a
# process that imports keras directly (a zoo model, a cold-import measurement)
# loads it the same way.
CHILD_ENV = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "1"}


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    for key, value in CHILD_ENV.items():
        env.setdefault(key, value)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def worker(kind: str, timeout: float = 600, python: Optional[str] = None, **kwargs) -> dict:
    """Run `benchmarks._worker KIND` in a fresh interpreter (this one, or `python`:
    another venv's); its JSON result (or {"error": ...}). `wall_s` is the child's
    whole wall time, start-up included; `load` the machine's load around it."""
    cmd = [python or sys.executable, "-m", "benchmarks._worker", kind, json.dumps(kwargs)]
    start = time.perf_counter()
    meter = Meter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"{kind} timed out after {timeout:.0f}s"}
    wall = time.perf_counter() - start
    load = meter.stop()
    LOAD_LOG.append(dict(load, kind=kind))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            result = json.loads(line[len(MARK):])
            result["wall_s"] = wall
            result["load"] = load
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
    return {"error": f"{kind} exited with {proc.returncode}: " + "\n".join(tail)}


def emit(result: dict) -> None:
    print(MARK + json.dumps(result), flush=True)


def median(values: List[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def interleaved(calls: Dict[str, Callable[[], object]], warmup: int, repeats: int) -> Dict[str, dict]:
    """Time every call `repeats` times after `warmup` untimed calls each. Rounds
    alternate the order (A B C, C B A, ...) so slow drift in machine load falls on
    every call alike. Per call: the samples, their median and min, and the first
    (cold) call's seconds."""
    first = {}
    for name, call in calls.items():
        for i in range(max(warmup, 1)):
            start = time.perf_counter()
            call()
            if i == 0:
                first[name] = time.perf_counter() - start
    samples: Dict[str, List[float]] = {name: [] for name in calls}
    names = list(calls)
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            for name in (names if r % 2 == 0 else names[::-1]):
                start = time.perf_counter()
                calls[name]()
                samples[name].append(time.perf_counter() - start)
    finally:
        gc.enable()
    return {name: {"median_s": median(s), "min_s": min(s), "first_call_s": first[name], "samples_s": s}
            for name, s in samples.items()}


def paired_ratio(a: List[float], b: List[float]) -> Optional[float]:
    """Median over rounds of a[i] / b[i] (the two were timed back to back)."""
    return median([x / y for x, y in zip(a, b)]) if a and b else None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def rss_mb() -> Optional[float]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


