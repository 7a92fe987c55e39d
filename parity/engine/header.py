"""What every mode's result starts with, the progress callback, and timing."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

Progress = Callable[[str], None]


def quiet(_message: str) -> None:
    """The progress callback of a run without progress display."""


def progress_or_quiet(progress: Optional[Progress]) -> Progress:
    return progress or quiet


@dataclass(kw_only=True)
class RunHeader:
    """The fields every result shares: what was compared, how, and in what.
    `ParityResult`, `PortResult` and `TrainingResult` extend it."""

    model: str
    reference: str
    dtype: str
    input_shape: tuple
    batch: int
    seed: int
    rtol: float
    atol: float
    options: Dict[str, object] = field(default_factory=dict)  # the model options used
    versions: Dict[str, str] = field(default_factory=dict)
    tf32: bool = False  # TF32 allowed on the GPU backends (off unless asked: it breaks the float32 bar)
    devices: Dict[str, str] = field(default_factory=dict)  # backend label -> its device in words, off the CPU only


@contextmanager
def timed_into(timings: Dict[str, Dict[str, float]], phase: str, key: str):
    """Adds the block's seconds to timings[phase][key]."""
    start = time.perf_counter()
    yield
    phases = timings.setdefault(phase, {})
    phases[key] = phases.get(key, 0.0) + time.perf_counter() - start
