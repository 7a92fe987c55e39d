"""Short constructors for spec nodes, so the zoo files read like tables."""

from __future__ import annotations

from .. import spec as S


def conv(name: str, out: int, kernel, stride=1, padding=0, bias: bool = True, groups: int = 1) -> S.Conv2d:
    return S.Conv2d(name=name, out_channels=out, kernel=S.pair(kernel), stride=S.pair(stride),
                    padding=S.pad4(padding), bias=bias, groups=groups)


def dense(name: str, out: int, bias: bool = True) -> S.Dense:
    return S.Dense(name=name, out_features=out, bias=bias)


def bn(name: str, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True) -> S.BatchNorm:
    return S.BatchNorm(name=name, eps=eps, momentum=momentum, affine=affine)


def act(name: str, kind: str = "relu") -> S.Activation:
    return S.Activation(name=name, kind=kind)


def relu(name: str) -> S.Activation:
    return act(name, "relu")


def maxpool(name: str, kernel, stride, padding=0, ceil_mode: bool = False) -> S.MaxPool:
    return S.MaxPool(name=name, kernel=S.pair(kernel), stride=S.pair(stride), padding=S.pad4(padding),
                     ceil_mode=ceil_mode)


def avgpool(name: str, kernel, stride, padding=0, ceil_mode: bool = False,
            count_include_pad: bool = True) -> S.AvgPool:
    return S.AvgPool(name=name, kernel=S.pair(kernel), stride=S.pair(stride), padding=S.pad4(padding),
                     ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def seq(name: str, *children: S.Node) -> S.Sequential:
    return S.Sequential(name=name, children=tuple(children))


def positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def rate(name: str, value: float) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)
