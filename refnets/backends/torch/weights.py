"""Canonical weights <-> a built torch model: the state_dict keys are the
canonical names and the layouts are already canonical (OIHW, (out, in))."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch

from ...weights import Weights, check
from .framework import nn


def state_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def get_weights(model: nn.Module) -> Weights:
    return {k: v.detach().cpu().numpy().copy() for k, v in state_tensors(model).items()}


def set_weights(model: nn.Module, weights: Weights) -> None:
    state = state_tensors(model)
    check({k: tuple(v.shape) for k, v in state.items()}, weights)
    with torch.no_grad():
        for name, tensor in state.items():
            tensor.copy_(torch.from_numpy(np.asarray(weights[name], dtype=tensor.detach().cpu().numpy().dtype)))


def count_params(model: nn.Module) -> Tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = trainable + sum(b.numel() for n, b in model.named_buffers()
                            if n.endswith(("running_mean", "running_var")))
    return trainable, total
