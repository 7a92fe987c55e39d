"""Default tolerances per dtype and the per-model overrides, each with its reason.

A run passes when max|out - ref| <= atol + rtol * max|ref| (see metrics.compare).
The defaults are justified by the measured errors of every model in the README.
"""

from __future__ import annotations

from typing import Dict, Tuple

DEFAULTS: Dict[str, Tuple[float, float]] = {  # dtype -> (rtol, atol)
    "float32": (1e-5, 0.0),
    "float64": (1e-10, 0.0),
}

# (model, dtype) -> (rtol, atol, measured reason). Only with a measured reason.
OVERRIDES: Dict[Tuple[str, str], Tuple[float, float, str]] = {}


def tolerance(model: str, dtype: str) -> Tuple[float, float]:
    if (model, dtype) in OVERRIDES:
        rtol, atol, _ = OVERRIDES[(model, dtype)]
        return rtol, atol
    return DEFAULTS[dtype]


def training_tolerance(model: str, dtype: str) -> Tuple[float, float]:
    """The bar of the training runs (gradients, training-mode step, optimiser
    steps): the inference defaults (see the README's training table)."""
    return tolerance(model, dtype)
