"""Torch and TensorFlow in one process: the order of two native libraries.

TensorFlow >= 2.20 wheels load their core library with RTLD_GLOBAL, which puts its
statically linked LLVM in the process's global symbol table; triton (>= 3.7, shipped
with the CUDA builds of torch) links its own LLVM, and `import triton` after
`import tensorflow` then dies with SIGSEGV inside dlopen (TensorFlow issue #124205).
torch imports triton lazily: the first torch.optim optimiser (through torch._dynamo)
does, which in an in-process parity run is after the keras backend loaded TensorFlow.
triton loaded first is fine. So the keras backend loads triton (0.2 s) before
TensorFlow, and the torch backend, finding TensorFlow already loaded by someone else
and triton not, marks triton absent: torch then runs without it (it needs it only for
torch.compile, which refnets does not use) instead of crashing.

Imports no framework itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def _triton_installed() -> bool:
    return "triton" not in sys.modules and importlib.util.find_spec("triton") is not None


def load_triton_before_tensorflow() -> None:
    """Called by the keras backend before its first `import tensorflow`."""
    if "tensorflow" not in sys.modules and _triton_installed():
        importlib.import_module("triton")


def keep_triton_away_from_tensorflow() -> None:
    """Called by the torch backend: TensorFlow is loaded and triton is not, so a
    later `import triton` would crash the process; make it an ImportError."""
    if "tensorflow" in sys.modules and _triton_installed():
        sys.modules["triton"] = None
