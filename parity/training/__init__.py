"""Beyond inference: gradients (`grad`), a training-mode step (`train`) and N
optimiser steps (`steps`), compared across backends on the same weights and
seeded batches; `common` holds the set-up, results and helpers they share."""

from .common import (DEFAULT_BATCH, DEFAULT_DTYPE, DEFAULT_LR, DEFAULT_MOMENTUM, OPTIMIZERS, ParamComparison,
                     StepRecord, TrainingBackendResult, TrainingResult, node_scales, nudge, seeded_batch)
from .grad import run_grad
from .steps import run_train_steps
from .train import run_train

__all__ = ["DEFAULT_BATCH", "DEFAULT_DTYPE", "DEFAULT_LR", "DEFAULT_MOMENTUM", "OPTIMIZERS", "ParamComparison",
           "StepRecord", "TrainingBackendResult", "TrainingResult", "node_scales", "nudge", "run_grad", "run_train",
           "run_train_steps", "seeded_batch"]
