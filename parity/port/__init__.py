"""Checking a user's hand-written port against our model (`parity --port`):
`load` (the user's model), `match` (structural weight mapping), `diagnose` (what
kind of porting bug the first divergent layer shows), `run` (`run_port`),
`assertions` (`assert_port_matches` for users' test suites)."""

from .assertions import assert_port_matches
from .load import PortLoadError, load_port
from .run import LayerPair, PortResult, run_port

__all__ = ["LayerPair", "PortLoadError", "PortResult", "assert_port_matches", "load_port", "run_port"]
