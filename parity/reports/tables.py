"""Shared by every report: text tables for people, strict JSON for machines."""

from __future__ import annotations

import math
from typing import List


def table(header, rows) -> List[str]:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def strict(value):
    """NaN and Inf as null (with `finite: false` beside them): strict JSON for any parser."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def device_lines(result) -> List[str]:
    """Where the backends ran, when any ran off the CPU (with TF32 on or off), else nothing."""
    if not result.devices:
        return []
    placed = "; ".join(f"{label} on {where}" for label, where in result.devices.items())
    return [f"devices: {placed}; every other backend on the CPU", ""]
