"""Spec -> hybridized tree of `HybridBlock`s whose children are registered under
the spec's segment names, so the dotted paths of `_collect_params_with_prefix()`
are the canonical names. One registered converter per node type (`CONVERTERS`)."""

from __future__ import annotations

from ... import rules, shapes
from ... import spec as S
from ..base import Converters
from .framework import CONTEXT, DTYPES, mx, nn
from .layers import (AdaptiveAvgPool, DivisorAvgPool, GlobalAvgPool, Identity, PaddedConv2D, PaddedMaxPool,
                     SharedBlock, Softmax, SpecParallel, SpecSequential, ZeroPad, native_pool_padding, symmetric)
from .weights import defer_gradients

CONVERTERS = Converters("mxnet")


@CONVERTERS.register(S.Conv2d)
def _conv(node: S.Conv2d, info: shapes.NodeInfo) -> nn.HybridBlock:
    node = rules.with_resolved_padding(node, info.in_shape[1:])
    common = dict(channels=node.out_channels, kernel_size=tuple(node.kernel), strides=tuple(node.stride),
                  dilation=tuple(node.dilation), groups=node.groups, use_bias=node.bias,
                  in_channels=info.in_shape[0], layout="NCHW")
    sym = symmetric(node.padding)
    if sym is not None:
        return nn.Conv2D(padding=sym, **common)
    return PaddedConv2D(side_padding=node.padding, **common)


@CONVERTERS.register(S.MaxPool)
def _maxpool(node: S.MaxPool, info: shapes.NodeInfo) -> nn.HybridBlock:
    node = rules.with_resolved_padding(node, info.in_shape[1:])
    native = native_pool_padding(node)
    if native is not None:
        return nn.MaxPool2D(pool_size=tuple(node.kernel), strides=tuple(node.stride), padding=native)
    return PaddedMaxPool(node, shapes.pool_window_padding(node, info.in_shape[1:]))


@CONVERTERS.register(S.AvgPool)
def _avgpool(node: S.AvgPool, info: shapes.NodeInfo) -> nn.HybridBlock:
    node = rules.with_resolved_padding(node, info.in_shape[1:])
    native = native_pool_padding(node)
    if native is not None:
        return nn.AvgPool2D(pool_size=tuple(node.kernel), strides=tuple(node.stride), padding=native,
                            count_include_pad=node.count_include_pad)
    in_hw = info.in_shape[1:]
    return DivisorAvgPool(node, shapes.pool_window_padding(node, in_hw), in_hw)


def gluon_momentum(node: S.BatchNorm) -> float:
    """Gluon's momentum (the weight of the *old* running statistic) for the spec's
    (PyTorch's: the weight of the new batch statistic)."""
    return 1.0 - node.momentum


@CONVERTERS.register(S.Dense)
def _dense(node: S.Dense, info: shapes.NodeInfo) -> nn.HybridBlock:
    return nn.Dense(node.out_features, use_bias=node.bias, flatten=False, in_units=info.in_shape[0])


@CONVERTERS.register(S.BatchNorm)
def _batchnorm(node: S.BatchNorm, info: shapes.NodeInfo) -> nn.HybridBlock:
    # scale=False, center=False: Gluon still holds gamma (ignored: fix_gamma) and beta
    # (kept at its zero initialisation); neither is a canonical weight (see `weights.params_of`).
    return nn.BatchNorm(axis=1, momentum=gluon_momentum(node), epsilon=node.eps, in_channels=info.in_shape[0],
                        scale=node.affine, center=node.affine)


@CONVERTERS.register(S.Activation)
def _activation(node: S.Activation, info) -> nn.HybridBlock:
    return Softmax() if node.kind == "softmax" else nn.Activation(node.kind)


@CONVERTERS.register(S.GlobalAvgPool)
def _global_avgpool(node: S.GlobalAvgPool, info) -> nn.HybridBlock:
    return GlobalAvgPool(node.keepdims)


@CONVERTERS.register(S.AdaptiveAvgPool)
def _adaptive_avgpool(node: S.AdaptiveAvgPool, info) -> nn.HybridBlock:
    return AdaptiveAvgPool(node.output_size)


@CONVERTERS.register(S.ZeroPad)
def _zero_pad(node: S.ZeroPad, info) -> nn.HybridBlock:
    return ZeroPad(node.padding)


@CONVERTERS.register(S.Flatten)
def _flatten(node, info) -> nn.HybridBlock:
    return nn.Flatten()


@CONVERTERS.register(S.Dropout)
def _dropout(node: S.Dropout, info) -> nn.HybridBlock:
    return nn.Dropout(node.rate)


@CONVERTERS.register(S.Identity)
def _identity(node, info) -> nn.HybridBlock:
    return Identity()


@CONVERTERS.register(S.Shared)
def _shared(node: S.Shared, info, target: nn.HybridBlock) -> nn.HybridBlock:
    return SharedBlock(target)


def _block(node: S.Node, path: str, infos, built) -> nn.HybridBlock:
    """The block of `node` at `path`; `built` (path -> block, filled in execution
    order) gives a Shared node's converter its target's block."""
    if isinstance(node, (S.Sequential, S.Parallel)):
        kids = {}
        for index, child in enumerate(S.children_of(node)):
            segment = S.child_segment(child, index)
            kids[segment] = _block(child, S.join(path, segment), infos, built)
        if isinstance(node, S.Sequential):
            return SpecSequential(kids)
        return SpecParallel(kids, node.merge)
    extra = {"target": built[node.target]} if isinstance(node, S.Shared) else {}
    built[path] = CONVERTERS.convert(node, infos[path], **extra)
    return built[path]


def _check_output_shape(net: nn.HybridBlock, model: S.ModelSpec) -> None:
    """Fail loudly if Gluon's shape for the spec's input differs from the spec's
    (symbolic shape inference: nothing is computed)."""
    symbol = net(mx.sym.var("data"))
    _, out_shapes, _ = symbol.infer_shape(data=(1,) + tuple(model.input_shape))
    got = tuple(out_shapes[0][1:])
    expected = tuple(shapes.output_shape(model))
    if got != expected:
        raise RuntimeError(f"mxnet backend: model {model.name!r} gives output shape {got} for input "
                           f"{tuple(model.input_shape)}, but the spec says {expected}")


def build(model: S.ModelSpec, dtype: str = "float32") -> nn.HybridBlock:
    """A hybridized `HybridBlock`, initialised by Gluon's own initialisers
    (He-normal kernels via `Xavier`, the layers' default zero biases and unit
    BatchNorm statistics), with no gradient arrays until gradients are first
    asked for (`weights.defer_gradients`)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    infos = shapes.infer(model)
    net = _block(model.root, "", infos, {})
    defer_gradients(net)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=CONTEXT)
    net.cast(dtype)
    net.hybridize()
    _check_output_shape(net, model)
    net.refnets_spec = model
    net.refnets_dtype = dtype
    mx.nd.waitall()  # initialisation runs asynchronously: finish it inside build, not in whatever comes next
    return net
