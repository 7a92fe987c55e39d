"""Giving freed heap memory back to the system.

glibc's malloc keeps memory that the frameworks freed (MXNet's initialisation
temporaries, a forward's activations) in its arenas, and raises its mmap threshold
after every large free, so later large blocks come from those arenas too: the
process's resident size only grows. `release_freed_memory` (glibc's
`malloc_trim(0)`) hands the free pages back between the steps of a run, so one
step's garbage does not sit under the next step's peak. A no-op elsewhere."""

from __future__ import annotations

import ctypes
import ctypes.util

_LIBC = {}


def release_freed_memory() -> bool:
    """Returns freed heap pages to the system; False where there is no glibc."""
    if "trim" not in _LIBC:
        try:
            _LIBC["trim"] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc
            _LIBC["trim"] = None
    trim = _LIBC["trim"]
    if trim is None:
        return False
    trim(0)
    return True
