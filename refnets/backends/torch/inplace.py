"""In-place ReLUs and residual additions where nothing else reads the tensor they
overwrite, as torchvision's ResNets run them.

Out of place, every ReLU and every residual sum allocates a fresh activation
(51 MB per tensor in ResNet-50's first stage at batch 16): on the CPU that is
a new allocation, page faults on first write and memory traffic for each one.
Profiled against torchvision (torch 2.14.1, 2 threads, batch 16) those two
(`aten::clamp_min`, `aten::add`) cost ResNet-50 about 0.5 s more per forward
than torchvision's `relu_` and `add_`, and the convolutions a further few
percent (they write into freshly faulted memory).

A node's output is *fresh* when it is a new tensor that only the next node
reads: the outputs of convolutions, BatchNorm, dense layers, pools and
activations, of an add of two or more branches and of a concatenation; a
Sequential's is its last child's. Identity, Flatten, Dropout, ZeroPad and
Shared may hand on their input (or a view of it), so theirs is not. A ReLU
runs in place only when the node before it in its Sequential is fresh (the
first node of a Sequential reads that Sequential's input, which a Parallel's
other branches or the caller's array share); an add accumulates into its
first branch's output only when that output is fresh, and only without
autograd (in-place arithmetic on a tensor autograd saved would break the
backward pass; ReLU's in-place form is safe after every fresh producer, whose
backward never needs its own output).

A capturing forward turns all of it off (`out_of_place`): every node's output
then stays as it was computed until the capture reads it, so the captures
need no copies.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import List

from ... import spec as S
from .framework import nn

_FRESH_TYPES = (S.Conv2d, S.BatchNorm, S.Dense, S.MaxPool, S.AvgPool, S.GlobalAvgPool, S.Activation)


def fresh(node: S.Node) -> bool:
    """Whether `node`'s output is a new tensor (never its input or a view of it)."""
    if isinstance(node, _FRESH_TYPES):
        return True
    if isinstance(node, S.Parallel):
        return node.merge != "add" or len(S.children_of(node)) >= 2
    if isinstance(node, S.Sequential):
        children = S.children_of(node)
        return bool(children) and fresh(children[-1])
    return False


def relu_in_place(previous) -> bool:
    """Whether a ReLU after sibling node `previous` (None: first in its Sequential) may run in place."""
    return previous is not None and fresh(previous)


def accumulator(node: S.Parallel) -> bool:
    """Whether an add may accumulate into its first branch's output."""
    children = S.children_of(node)
    return node.merge == "add" and len(children) >= 2 and fresh(children[0])


def switchable(model: nn.Module) -> List[nn.Module]:
    """The modules of `model` that run in place (each has an `inplace` flag)."""
    return [m for m in model.modules() if getattr(m, "inplace", False) is True]


@contextmanager
def out_of_place(model: nn.Module):
    """Everything in `model` out of place for the duration (a capturing forward)."""
    modules = getattr(model, "refnets_inplace", None)
    if modules is None:
        modules = switchable(model)
    for module in modules:
        module.inplace = False
    try:
        yield
    finally:
        for module in modules:
            module.inplace = True
