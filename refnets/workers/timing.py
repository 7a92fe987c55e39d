"""Timing loops run where the model lives: inside a worker process (the ops
`time_build`, `time_forward`, `time_step`, `train_batches`, `resources` of
`server`), or in this process for a backend that runs here. Timing inside the
worker leaves the request's round trip (pipe, safetensors framing) out of the
figures.

Imports only the standard library (the callers pass numpy arrays in).
"""

from __future__ import annotations

import os
import resource
import time
from typing import Callable, Dict, List


def time_calls(fn: Callable[[], object], repeats: int, warmup: int) -> List[float]:
    """Seconds of each of `repeats` calls of `fn`, after `warmup` untimed calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def train_batches(trainer, x, labels, batch: int) -> Dict[str, object]:
    """Optimiser steps over `x`, `labels` in order, `batch` samples a step (the
    last step may be smaller): {"losses": [per step], "seconds": total}."""
    losses, start = [], time.perf_counter()
    for begin in range(0, len(x), batch):
        losses.append(float(trainer.step(x[begin:begin + batch], labels[begin:begin + batch])))
    return {"losses": losses, "seconds": time.perf_counter() - start}


def resources() -> Dict[str, float]:
    """This process: its peak resident memory (bytes; Linux reports ru_maxrss in
    KiB) and the CPU seconds it has used (user + system), with its pid."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"pid": os.getpid(), "peak_rss_bytes": usage.ru_maxrss * 1024,
            "cpu_seconds": usage.ru_utime + usage.ru_stime}
