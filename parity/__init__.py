"""parity: does an architecture compute the same function in every framework?

`parity.run(...)` returns a `ParityResult`; `run_grad`, `run_train` and
`run_train_steps` (gradients, a training-mode step, optimiser steps) return a
`TrainingResult`; `python -m parity` is a thin CLI over them. Importing this
package imports no framework."""

from .conformance import run_against
from .runner import USAGE_ERRORS, BackendResult, ParityResult, ParityUsageError, run
from .training import TrainingResult, run_grad, run_train, run_train_steps

__all__ = ["BackendResult", "ParityResult", "ParityUsageError", "TrainingResult", "USAGE_ERRORS", "run",
           "run_against", "run_grad", "run_train", "run_train_steps"]
