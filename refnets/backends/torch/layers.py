"""PyTorch modules for what torch.nn cannot express directly: per-side conv
padding, -inf pool padding (asymmetric or ceil-mode overhang), PyTorch-rule
average pools over explicit padding, and BatchNorm with the biased running-variance
update."""

from __future__ import annotations

from typing import Dict

import torch

from ... import shapes
from ... import spec as S
from .framework import F, nn


def symmetric(pad: S.Pad4):
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
    def __init__(self, keepdims: bool = False):
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x):
        return x.mean(dim=(2, 3), keepdim=self.keepdims)


class SharedLayer(nn.Module):
    """Calls a module registered elsewhere in the model (a spec `Shared` node):
    the module is held outside torch's registry, so its parameters and state_dict
    entries stay once, under the target's name, and autograd adds up the
    gradients of both uses. `.to()`, `.train()` and copies reach it through its
    own place in the model."""

    def __init__(self, target: nn.Module):
        super().__init__()
        self.shared = (target,)  # a tuple: not registered as a child

    def forward(self, x):
        return self.shared[0](x)


class Flatten(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)


class SpecSequential(nn.Sequential):
    """nn.Sequential whose children carry the spec's segment names."""


class SpecParallel(nn.Module):
    """The branches on the same input, added (in the branches' order) or
    concatenated. `inplace`: the sum accumulates into the first branch's output
    (a fresh tensor only this add reads, see `inplace.py`) when autograd is off."""

    def __init__(self, branches: Dict[str, nn.Module], merge: str, inplace: bool = False):
        super().__init__()
        for name, module in branches.items():
            self.add_module(name, module)
        self.merge = merge
        self.inplace = inplace

    def forward(self, x):
        outs = [branch(x) for branch in self.children()]
        if self.merge == "add":
            total = outs[0]
            if self.inplace and not torch.is_grad_enabled():
                for out in outs[1:]:
                    total.add_(out)
                return total
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


