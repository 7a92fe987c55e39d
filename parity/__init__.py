"""parity: does an architecture compute the same function in every framework?

`parity.run(...)` returns a `ParityResult`; `python -m parity` is a thin CLI over it.
Importing this package imports no framework."""

from .conformance import run_against
from .runner import USAGE_ERRORS, BackendResult, ParityResult, ParityUsageError, run

__all__ = ["BackendResult", "ParityResult", "ParityUsageError", "USAGE_ERRORS", "run", "run_against"]
