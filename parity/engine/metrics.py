"""How two arrays are compared: the figures every report and verdict use."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import math

import numpy as np


@dataclass(frozen=True)
class Comparison:
    max_abs: float
    max_rel: float  # max|out - ref| / max|ref|
    mean_abs: float
    ref_scale: float  # max|ref|
    finite: bool
    top1: Optional[float]  # fraction of the batch whose arg-max agrees (class outputs only)
    passed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _max_magnitude(ref: np.ndarray, finite: bool) -> float:
    """max|ref| without an |ref| temporary when ref is finite (two passes, no copy)."""
    if not ref.size:
        return 0.0
    if finite:
        return float(max(abs(np.max(ref)), abs(np.min(ref))))
    return float(np.max(np.abs(ref)))


def compare(out: np.ndarray, ref: np.ndarray, rtol: float, atol: float, scale: Optional[float] = None) -> Comparison:
    """Pass iff shapes match, everything is finite and max|out-ref| <= atol + rtol*scale,
    where scale is max|ref| unless given (a gradient is judged at the scale of its
    node's largest gradient: see parity.training)."""
    if out.shape != ref.shape:
        return Comparison(float("inf"), float("inf"), float("inf"), float("nan"), False, None, False)
    diff = np.asarray(np.subtract(out, ref, dtype=np.float64))  # the one float64 temporary (0-d: an array too)
    np.abs(diff, out=diff)
    max_abs = float(np.max(diff)) if diff.size else 0.0
    # A NaN or infinity in either array makes the difference NaN or infinite there, so
    # a finite max_abs proves both finite; only otherwise are they searched (a float64
    # overflow of two finite values also lands there).
    finite = math.isfinite(max_abs) or bool(np.all(np.isfinite(out)) and np.all(np.isfinite(ref)))
    if scale is None:
        scale = _max_magnitude(ref, finite)
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    top1 = None
    if out.ndim == 2 and out.shape[1] > 1:
        top1 = float(np.mean(np.argmax(out, axis=1) == np.argmax(ref, axis=1)))
    passed = finite and max_abs <= atol + rtol * scale
    return Comparison(max_abs, max_rel, float(np.mean(diff)) if diff.size else 0.0, scale, finite, top1, passed)
