"""PyTorch, imported once for the torch backend package: dtypes and versions."""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F  # noqa: F401 (shared by the package's modules)
from torch import nn  # noqa: F401

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def versions() -> Dict[str, str]:
    return {"torch": torch.__version__}
