"""parity: does an architecture compute the same function in every framework?

`parity.run(...)` returns a `ParityResult`, `parity.run_against(...)` checks a
framework's own zoo model, `parity.run_port(...)` (and `assert_port_matches`) a
user's hand-written port; `run_grad`, `run_train` and `run_train_steps`
(gradients, a training-mode step, optimiser steps) return a `TrainingResult`;
`python -m parity` is a thin CLI over them. Importing this package imports no
framework."""

from .assertions import assert_port_matches
from .conformance import run_against
from .port import PortResult, run_port
from .runner import USAGE_ERRORS, BackendResult, ParityResult, ParityUsageError, run
from .training import TrainingResult, run_grad, run_train, run_train_steps

__all__ = ["BackendResult", "ParityResult", "ParityUsageError", "PortResult", "TrainingResult", "USAGE_ERRORS",
           "assert_port_matches", "run", "run_against", "run_grad", "run_port", "run_train", "run_train_steps"]
