"""PyTorch, imported once for the torch backend package: dtypes and versions."""

from __future__ import annotations

from typing import Dict

from refnets.backends.coexist import keep_triton_away_from_tensorflow

keep_triton_away_from_tensorflow()  # triton after TensorFlow >= 2.20 segfaults: see coexist.py

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: F401,E402 (shared by the package's modules)
from torch import nn  # noqa: E402,F401

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def versions() -> Dict[str, str]:
    return {"torch": torch.__version__}
