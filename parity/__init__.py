"""parity: does an architecture compute the same function in every framework?

`parity.run(...)` returns a `ParityResult`, `parity.run_against(...)` checks a
framework's own zoo model, `parity.run_port(...)` (and `assert_port_matches`) a
user's hand-written port; `run_grad`, `run_train` and `run_train_steps`
(gradients, a training-mode step, optimiser steps) return a `TrainingResult`;
`python -m parity` is a thin CLI over them (`parity.cli`). Importing this package
imports no framework.

Layout: `engine/` (the set-up every mode shares, metrics, localisation,
tolerances, the result header), `inference`, `conformance`, `port/`, `training/`,
`reports/`, `cli`."""

from .conformance import run_against
from .engine.config import USAGE_ERRORS, ParityUsageError
from .engine.session import BackendResult, ParityResult
from .inference import run
from .port import PortResult, assert_port_matches, run_port
from .training import TrainingResult, run_grad, run_train, run_train_steps

__all__ = ["BackendResult", "ParityResult", "ParityUsageError", "PortResult", "TrainingResult", "USAGE_ERRORS",
           "assert_port_matches", "run", "run_against", "run_grad", "run_port", "run_train", "run_train_steps"]
