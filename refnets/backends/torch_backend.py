"""PyTorch backend: interprets a spec into an `nn.Module` tree whose module names
are the spec's segment names, so `state_dict()` keys are the canonical names.

PyTorch's BatchNorm is the spec's reference rule (momentum = weight of the new
batch statistic, running variance updated with the unbiased batch variance); a
BatchNorm with `unbiased_running_var=False` gets `BiasedVarBatchNorm*d`."""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import shapes
from .. import spec as S
from ..weights import Weights, check
from . import Gradients, heavy_ball_momentum

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _symmetric(pad: S.Pad4):
    t, b, l, r = pad
    return (t, l) if (t == b and l == r) else None


class PaddedConv2d(nn.Conv2d):
    """A conv with zero padding that may differ per side."""

    def __init__(self, *args, side_padding: S.Pad4, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        t, b, l, r = side_padding
        self.side_padding = (l, r, t, b)

    def forward(self, x):
        return super().forward(F.pad(x, self.side_padding))


class PaddedMaxPool(nn.Module):
    """Max pool over explicit -inf padding (asymmetric or ceil-mode overhang)."""

    def __init__(self, node: S.MaxPool, window_padding: S.Pad4):
        super().__init__()
        t, b, l, r = window_padding
        self.pad = (l, r, t, b)
        self.kernel, self.stride = node.kernel, node.stride

    def forward(self, x):
        x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


class DivisorAvgPool(nn.Module):
    """Average pool as a zero-padded sum pool over the spec's divisor map, for
    padding PyTorch's own AvgPool2d cannot express (asymmetric)."""

    def __init__(self, node: S.AvgPool, window_padding: S.Pad4, in_hw, dtype):
        super().__init__()
        t, b, l, r = window_padding
        self.pad = (l, r, t, b)
        self.kernel, self.stride = node.kernel, node.stride
        self.register_buffer("divisor", torch.tensor(shapes.avgpool_divisors(node, in_hw), dtype=dtype),
                             persistent=False)

    def forward(self, x):
        window = self.kernel[0] * self.kernel[1]
        summed = F.avg_pool2d(F.pad(x, self.pad), self.kernel, self.stride) * window
        return summed / self.divisor


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class Flatten(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)


class SpecSequential(nn.Sequential):
    """nn.Sequential whose children carry the spec's segment names."""


class SpecParallel(nn.Module):
    def __init__(self, branches: Dict[str, nn.Module], merge: str):
        super().__init__()
        for name, module in branches.items():
            self.add_module(name, module)
        self.merge = merge

    def forward(self, x):
        outs = [branch(x) for branch in self.children()]
        if self.merge == "add":
            total = outs[0]
            for out in outs[1:]:
                total = total + out
            return total
        return torch.cat(outs, dim=1)


class _BiasedRunningVar:
    """Mixin for PyTorch's BatchNorm: in training, normalise as PyTorch does but
    update `running_var` with the biased batch variance (the spec's
    `unbiased_running_var=False`; PyTorch itself always uses the unbiased one)."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        out = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.no_grad():
            var, mean = torch.var_mean(x, dim=[0] + list(range(2, x.dim())), unbiased=False)
            self.running_mean.mul_(1.0 - self.momentum).add_(mean, alpha=self.momentum)
            self.running_var.mul_(1.0 - self.momentum).add_(var, alpha=self.momentum)
            self.num_batches_tracked.add_(1)
        return out


class BiasedVarBatchNorm1d(_BiasedRunningVar, nn.BatchNorm1d):
    pass


class BiasedVarBatchNorm2d(_BiasedRunningVar, nn.BatchNorm2d):
    pass


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def _conv(node: S.Conv2d, info: shapes.NodeInfo) -> nn.Module:
    common = dict(in_channels=info.in_shape[0], out_channels=node.out_channels, kernel_size=node.kernel,
                  stride=node.stride, dilation=node.dilation, groups=node.groups, bias=node.bias)
    symmetric = _symmetric(node.padding)
    if symmetric is not None:
        return nn.Conv2d(padding=symmetric, **common)
    return PaddedConv2d(side_padding=node.padding, **common)


def _maxpool(node: S.MaxPool, info: shapes.NodeInfo) -> nn.Module:
    symmetric = _symmetric(node.padding)
    fits = symmetric is not None and all(p <= k // 2 for p, k in zip(symmetric, node.kernel))
    if fits:
        return nn.MaxPool2d(node.kernel, node.stride, padding=symmetric, ceil_mode=node.ceil_mode)
    return PaddedMaxPool(node, shapes.pool_window_padding(node, info.in_shape[1:]))


def _avgpool(node: S.AvgPool, info: shapes.NodeInfo, dtype) -> nn.Module:
    symmetric = _symmetric(node.padding)
    if symmetric is not None and all(p <= k // 2 for p, k in zip(symmetric, node.kernel)):
        return nn.AvgPool2d(node.kernel, node.stride, padding=symmetric, ceil_mode=node.ceil_mode,
                            count_include_pad=node.count_include_pad)
    return DivisorAvgPool(node, shapes.pool_window_padding(node, info.in_shape[1:]), info.in_shape[1:], dtype)


def _batchnorm(node: S.BatchNorm, info: shapes.NodeInfo) -> nn.Module:
    if node.unbiased_running_var:
        cls = nn.BatchNorm2d if len(info.in_shape) == 3 else nn.BatchNorm1d
    else:
        cls = BiasedVarBatchNorm2d if len(info.in_shape) == 3 else BiasedVarBatchNorm1d
    return cls(info.in_shape[0], eps=node.eps, momentum=node.momentum, affine=node.affine)


def _leaf(node: S.Node, info: shapes.NodeInfo, dtype) -> nn.Module:
    if isinstance(node, S.Conv2d):
        return _conv(node, info)
    if isinstance(node, S.Dense):
        return nn.Linear(info.in_shape[0], node.out_features, bias=node.bias)
    if isinstance(node, S.BatchNorm):
        return _batchnorm(node, info)
    if isinstance(node, S.Activation):
        return ACTIVATIONS[node.kind]()
    if isinstance(node, S.MaxPool):
        return _maxpool(node, info)
    if isinstance(node, S.AvgPool):
        return _avgpool(node, info, dtype)
    if isinstance(node, S.GlobalAvgPool):
        return GlobalAvgPool()
    if isinstance(node, S.AdaptiveAvgPool):
        return nn.AdaptiveAvgPool2d(node.output_size)
    if isinstance(node, S.ZeroPad):
        t, b, l, r = node.padding
        return nn.ZeroPad2d((l, r, t, b))
    if isinstance(node, S.Flatten):
        return Flatten()
    if isinstance(node, S.Dropout):
        return nn.Dropout(node.rate)
    if isinstance(node, S.Identity):
        return nn.Identity()
    raise TypeError(f"torch backend: unsupported node type {type(node).__name__}")


def _module(node: S.Node, path: str, infos, dtype) -> nn.Module:
    if isinstance(node, (S.Sequential, S.Parallel)):
        kids = {}
        for index, child in enumerate(S.children_of(node)):
            segment = S.child_segment(child, index)
            kids[segment] = _module(child, S.join(path, segment), infos, dtype)
        if isinstance(node, S.Sequential):
            seq = SpecSequential()
            for segment, module in kids.items():
                seq.add_module(segment, module)
            return seq
        return SpecParallel(kids, node.merge)
    return _leaf(node, infos[path], dtype)


def build(model: S.ModelSpec, dtype: str = "float32") -> nn.Module:
    """An `nn.Module` in eval mode, initialised by PyTorch's own initialisers."""
    torch_dtype = DTYPES[dtype]
    infos = shapes.infer(model)
    net = _module(model.root, "", infos, torch_dtype).to(torch_dtype).eval()
    net.refnets_spec = model
    net.refnets_dtype = torch_dtype  # also for models without parameters
    return net


def _state(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def get_weights(model: nn.Module) -> Weights:
    return {k: v.detach().cpu().numpy().copy() for k, v in _state(model).items()}


def set_weights(model: nn.Module, weights: Weights) -> None:
    state = _state(model)
    check({k: tuple(v.shape) for k, v in state.items()}, weights)
    with torch.no_grad():
        for name, tensor in state.items():
            tensor.copy_(torch.from_numpy(np.asarray(weights[name], dtype=tensor.detach().cpu().numpy().dtype)))


def _capture_hooks(model: nn.Module, capture: Sequence[str], store: Dict[str, np.ndarray]):
    modules = dict(model.named_modules())
    unknown = [p for p in capture if p not in modules]
    if unknown:
        raise KeyError(f"no node(s) {unknown} in the model")

    def hook_for(path):
        def hook(_module, _inputs, output):
            store[path] = output.detach().cpu().numpy().copy()
        return hook

    return [modules[p].register_forward_hook(hook_for(p)) for p in capture]


def _tensor(model: nn.Module, x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(model.refnets_dtype)


def forward(model: nn.Module, x: np.ndarray, capture: Sequence[str] = (),
            train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Forward of a channels-first batch, in inference mode or (`train`) in
    training mode (BatchNorm on batch statistics; the running statistics are
    restored afterwards, so the model is unchanged); optionally the outputs of
    the spec nodes named in `capture` (channels-first)."""
    store: Dict[str, np.ndarray] = {}
    handles = _capture_hooks(model, capture, store)
    buffers = [b for _, b in model.named_buffers()]
    saved = [b.clone() for b in buffers] if train else []
    try:
        model.train(train)
        with torch.no_grad() if train else torch.inference_mode():
            out = model(_tensor(model, x))
    finally:
        model.eval()
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)
    return out.cpu().numpy(), store


def _loss(model: nn.Module, x: torch.Tensor, labels: np.ndarray, train: bool):
    """(loss, logits) of one forward in training or inference mode."""
    model.train(train)
    logits = model(x)
    return F.cross_entropy(logits, torch.from_numpy(np.asarray(labels, dtype=np.int64))), logits


def gradients(model: nn.Module, x: np.ndarray, labels: np.ndarray, train: bool = False) -> Gradients:
    """Loss, logits and the gradients of the mean cross-entropy with respect to
    the input and every parameter. `train`: training mode, which updates the
    BatchNorm running statistics as a training step does."""
    inputs = _tensor(model, x).requires_grad_(True)
    model.zero_grad(set_to_none=True)
    try:
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
        self.optimizer.zero_grad(set_to_none=True)
        try:
            loss, _ = _loss(self.model, _tensor(self.model, x), labels, train=True)
            loss.backward()
            self.optimizer.step()
        finally:
            self.model.eval()
        return loss.item()


def count_params(model: nn.Module) -> Tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = trainable + sum(b.numel() for n, b in model.named_buffers()
                            if n.endswith(("running_mean", "running_var")))
    return trainable, total


def versions() -> Dict[str, str]:
    return {"torch": torch.__version__}
