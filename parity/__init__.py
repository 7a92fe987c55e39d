"""parity: does an architecture compute the same function in every framework?

`parity.run(...)` returns a `ParityResult`, `parity.run_against(...)` checks a
framework's own zoo model, `parity.run_port(...)` (and `assert_port_matches`) a
user's hand-written port; `python -m parity` is a thin CLI over them.
Importing this package imports no framework."""

from .assertions import assert_port_matches
from .conformance import run_against
from .port import PortResult, run_port
from .runner import USAGE_ERRORS, BackendResult, ParityResult, ParityUsageError, run

__all__ = ["BackendResult", "ParityResult", "ParityUsageError", "PortResult", "USAGE_ERRORS", "assert_port_matches",
           "run", "run_against", "run_port"]
