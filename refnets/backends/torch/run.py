"""Forward with per-node capture, gradients and training steps of a built torch model."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
import torch

from ..base import Gradients, heavy_ball_momentum
from .device import precision
from .framework import F, ensure_threads, nn
from .inplace import out_of_place


def _capture_hooks(model: nn.Module, capture: Sequence[str], sink: Callable[[str, np.ndarray], None]):
    """Forward hooks handing each node in `capture` to `sink` as it is computed
    (a shared module's first call only)."""
    modules = dict(model.named_modules())
    unknown = [p for p in capture if p not in modules]
    if unknown:
        raise KeyError(f"no node(s) {unknown} in the model")
    seen = set()

    def hook_for(path):
        def hook(_module, _inputs, output):
            if path not in seen:  # a shared module runs again later: keep its own (first) call
                seen.add(path)
                # No copy: the capturing forward runs out of place (`inplace.out_of_place`),
                # so nothing overwrites this tensor afterwards.
                sink(path, output.detach().cpu().numpy())
        return hook

    return [modules[p].register_forward_hook(hook_for(p)) for p in dict.fromkeys(capture)]


def _tensor(model: nn.Module, x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=model_device(model), dtype=model.refnets_dtype)


def model_device(model: nn.Module) -> torch.device:
    return getattr(model, "refnets_device", torch.device("cpu"))


def forward(model: nn.Module, x: np.ndarray, capture: Sequence[str] = (),
            train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Forward of a channels-first batch, in inference mode or (`train`) in
    training mode (BatchNorm on batch statistics; the running statistics are
    restored afterwards, so the model is unchanged); optionally the outputs of
    the spec nodes named in `capture` (channels-first)."""
    store: Dict[str, np.ndarray] = {}
    out = stream(model, x, capture, store.__setitem__, train)
    return out, store


def stream(model: nn.Module, x: np.ndarray, capture: Sequence[str], sink: Callable[[str, np.ndarray], None],
           train: bool = False) -> np.ndarray:
    """`forward`, handing each node in `capture` to `sink` from a forward hook as
    soon as it is computed: torch frees it once neither the forward nor the sink
    holds it."""
    ensure_threads()
    handles = _capture_hooks(model, capture, sink)
    buffers = [b for _, b in model.named_buffers()]
    saved = [b.clone() for b in buffers] if train else []
    try:
        model.train(train)
        with precision(model), torch.no_grad() if train else torch.inference_mode(), \
                out_of_place(model) if capture else nullcontext():
            out = model(_tensor(model, x))
    finally:
        model.eval()
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)
    return out.cpu().numpy()


def _loss(model: nn.Module, x: torch.Tensor, labels: np.ndarray, train: bool):
    """(loss, logits) of one forward in training or inference mode."""
    model.train(train)
    logits = model(x)
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(model_device(model))
    return F.cross_entropy(logits, targets), logits


def gradients(model: nn.Module, x: np.ndarray, labels: np.ndarray, train: bool = False) -> Gradients:
    """Loss, logits and the gradients of the mean cross-entropy with respect to
    the input and every parameter. `train`: training mode, which updates the
    BatchNorm running statistics as a training step does."""
    ensure_threads()
    inputs = _tensor(model, x).requires_grad_(True)
    model.zero_grad(set_to_none=True)
    try:
        with precision(model):
            loss, logits = _loss(model, inputs, labels, train)
            loss.backward()
    finally:
        model.eval()
    params = {name: (torch.zeros_like(p) if p.grad is None else p.grad).detach().cpu().numpy().copy()
              for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return Gradients(loss.item(), logits.detach().cpu().numpy(), inputs.grad.cpu().numpy(), params)


class Trainer:
    """Training steps with torch.optim.SGD ("sgd", or "momentum": heavy ball;
    no dampening, Nesterov or weight decay) on the mean cross-entropy, the model
    in training mode."""

    def __init__(self, model: nn.Module, optimizer: str, lr: float, momentum: float = 0.0):
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr,
                                         momentum=heavy_ball_momentum(optimizer, momentum))

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        """One optimiser step on the batch; the loss before the step."""
        ensure_threads()
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with precision(self.model):
                loss, _ = _loss(self.model, _tensor(self.model, x), labels, train=True)
                loss.backward()
                self.optimizer.step()
        finally:
            self.model.eval()
        return loss.item()
