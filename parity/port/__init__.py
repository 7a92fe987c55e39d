"""Checking a user's hand-written port against our model (`parity --port`):
`refnets.userload` loads the user's model; `match` (structural weight mapping), `diagnose` (what
kind of porting bug the first divergent layer shows), `run` (`run_port`),
`assertions` (`assert_port_matches` for users' test suites)."""

from refnets.userload import UserCodeError, load_model

from .assertions import assert_port_matches
from .run import LayerPair, PortResult, run_port

__all__ = ["LayerPair", "PortResult", "UserCodeError", "load_model", "assert_port_matches", "run_port"]
