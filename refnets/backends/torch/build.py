"""Spec -> `nn.Module` tree whose module names are the spec's segment names, so
`state_dict()` keys are the canonical names. One registered converter per node
type (`CONVERTERS`).

PyTorch's BatchNorm is the spec's reference rule (momentum = weight of the new
batch statistic, running variance updated with the unbiased batch variance); a
BatchNorm with `unbiased_running_var=False` gets `BiasedVarBatchNorm*d`."""

from __future__ import annotations

from ... import rules, shapes
from ... import spec as S
from ..base import Converters
from . import inplace
from .device import check_device, place
from .framework import DTYPES, nn
from .layers import (
    BiasedVarBatchNorm1d,
    BiasedVarBatchNorm2d,
    DivisorAvgPool,
    Flatten,
    GlobalAvgPool,
    PaddedConv2d,
    PaddedMaxPool,
    SharedLayer,
    SpecParallel,
    SpecSequential,
    symmetric,
)

CONVERTERS = Converters("torch")


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softmax": lambda: nn.Softmax(dim=1)}


@CONVERTERS.register(S.Conv2d)
def _conv(node: S.Conv2d, info: shapes.NodeInfo, dtype) -> nn.Module:
    node = rules.with_resolved_padding(node, info.in_shape[1:])
    common = dict(in_channels=info.in_shape[0], out_channels=node.out_channels, kernel_size=node.kernel,
                  stride=node.stride, dilation=node.dilation, groups=node.groups, bias=node.bias)
    sym = symmetric(node.padding)
    if sym is not None:
        return nn.Conv2d(padding=sym, **common)
    return PaddedConv2d(side_padding=node.padding, **common)


@CONVERTERS.register(S.MaxPool)
def _maxpool(node: S.MaxPool, info: shapes.NodeInfo, dtype) -> nn.Module:
    node = rules.with_resolved_padding(node, info.in_shape[1:])
    sym = symmetric(node.padding)
    fits = sym is not None and all(p <= k // 2 for p, k in zip(sym, node.kernel))
    if fits:
        return nn.MaxPool2d(node.kernel, node.stride, padding=sym, ceil_mode=node.ceil_mode)
    return PaddedMaxPool(node, shapes.pool_window_padding(node, info.in_shape[1:]))


@CONVERTERS.register(S.AvgPool)
def _avgpool(node: S.AvgPool, info: shapes.NodeInfo, dtype) -> nn.Module:
    node = rules.with_resolved_padding(node, info.in_shape[1:])
    sym = symmetric(node.padding)
    if sym is not None and all(p <= k // 2 for p, k in zip(sym, node.kernel)):
        return nn.AvgPool2d(node.kernel, node.stride, padding=sym, ceil_mode=node.ceil_mode,
                            count_include_pad=node.count_include_pad)
    return DivisorAvgPool(node, shapes.pool_window_padding(node, info.in_shape[1:]), info.in_shape[1:], dtype)


@CONVERTERS.register(S.BatchNorm)
def _batchnorm(node: S.BatchNorm, info: shapes.NodeInfo, dtype) -> nn.Module:
    if node.unbiased_running_var:
        cls = nn.BatchNorm2d if len(info.in_shape) == 3 else nn.BatchNorm1d
    else:
        cls = BiasedVarBatchNorm2d if len(info.in_shape) == 3 else BiasedVarBatchNorm1d
    return cls(info.in_shape[0], eps=node.eps, momentum=node.momentum, affine=node.affine)


@CONVERTERS.register(S.Dense)
def _dense(node: S.Dense, info: shapes.NodeInfo, dtype) -> nn.Module:
    return nn.Linear(info.in_shape[0], node.out_features, bias=node.bias)


@CONVERTERS.register(S.Activation)
def _activation(node: S.Activation, info, dtype) -> nn.Module:
    return ACTIVATIONS[node.kind]()


@CONVERTERS.register(S.GlobalAvgPool)
def _global_avgpool(node: S.GlobalAvgPool, info, dtype) -> nn.Module:
    return GlobalAvgPool(node.keepdims)


@CONVERTERS.register(S.AdaptiveAvgPool)
def _adaptive_avgpool(node: S.AdaptiveAvgPool, info, dtype) -> nn.Module:
    return nn.AdaptiveAvgPool2d(node.output_size)


@CONVERTERS.register(S.ZeroPad)
def _zero_pad(node: S.ZeroPad, info, dtype) -> nn.Module:
    t, b, l, r = node.padding
    return nn.ZeroPad2d((l, r, t, b))


@CONVERTERS.register(S.Flatten)
def _flatten(node, info, dtype) -> nn.Module:
    return Flatten()


@CONVERTERS.register(S.Dropout)
def _dropout(node: S.Dropout, info, dtype) -> nn.Module:
    return nn.Dropout(node.rate)


@CONVERTERS.register(S.Identity)
def _identity(node, info, dtype) -> nn.Module:
    return nn.Identity()


@CONVERTERS.register(S.Shared)
def _shared(node: S.Shared, info, dtype, target: nn.Module) -> nn.Module:
    if getattr(target, "inplace", False):  # its second use may read a tensor others share
        target.inplace = False
    return SharedLayer(target)


def _module(node: S.Node, path: str, infos, dtype, built) -> nn.Module:
    """The module of `node` at `path`; `built` (path -> module, filled in execution
    order) gives a Shared node's converter its target's module."""
    if isinstance(node, (S.Sequential, S.Parallel)):
        kids, previous = {}, None
        for index, child in enumerate(S.children_of(node)):
            segment = S.child_segment(child, index)
            kids[segment] = _module(child, S.join(path, segment), infos, dtype, built)
            if isinstance(node, S.Sequential) and _is_relu(child) and inplace.relu_in_place(previous):
                kids[segment].inplace = True
            previous = child
        if isinstance(node, S.Sequential):
            seq = SpecSequential()
            for segment, module in kids.items():
                seq.add_module(segment, module)
            return seq
        return SpecParallel(kids, node.merge, inplace=inplace.accumulator(node))
    extra = {"target": built[node.target]} if isinstance(node, S.Shared) else {}
    built[path] = CONVERTERS.convert(node, infos[path], dtype, **extra)
    return built[path]


def _is_relu(node: S.Node) -> bool:
    return isinstance(node, S.Activation) and node.kind == "relu"


def build(model: S.ModelSpec, dtype: str = "float32", device: str = "cpu", tf32: bool = False) -> nn.Module:
    """An `nn.Module` in eval mode on `device`, initialised by PyTorch's own
    initialisers (TF32 on CUDA only when `tf32`, see `device.precision`)."""
    torch_dtype = DTYPES[dtype]
    target = check_device(device)
    infos = shapes.infer(model)
    net = _module(model.root, "", infos, torch_dtype, {}).to(torch_dtype).eval()
    net.refnets_spec = model
    net.refnets_dtype = torch_dtype  # also for models without parameters
    net.refnets_inplace = inplace.switchable(net)  # turned off while capturing
    return place(net, target, tf32)


