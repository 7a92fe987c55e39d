"""PyTorch, imported once for the torch backend package: dtypes and versions."""

from __future__ import annotations

import os
from typing import Dict

from refnets.backends.coexist import keep_triton_away_from_tensorflow

keep_triton_away_from_tensorflow()  # triton after TensorFlow >= 2.20 segfaults: see coexist.py

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: F401,E402 (shared by the package's modules)
from torch import nn  # noqa: E402,F401

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def versions() -> Dict[str, str]:
    return {"torch": torch.__version__}


def usable_threads() -> int:
    """The intra-op threads torch should use: OMP_NUM_THREADS when set, else the
    cores this process may run on."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ensure_threads() -> None:
    """Puts torch's thread count back where it belongs. Importing mxnet in the same
    process sets the OpenMP pool torch shares to one thread, so torch would run
    single-threaded in every parity run that has MXNet in it; checked before each
    forward, gradient and training step (mxnet may be imported after torch)."""
    wanted = usable_threads()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
