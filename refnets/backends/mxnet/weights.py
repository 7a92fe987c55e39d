"""Canonical weights <-> Gluon parameters. Gluon already uses the canonical
layouts (OIHW kernels, (out, in) dense weights); BatchNorm's gamma and beta are the
canonical weight and bias (`CANONICAL_PARAM`, also the port reader's role names)."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from ... import spec as S
from ...weights import Weights, check
from .framework import CONTEXT, gluon, mx, nn

CANONICAL_PARAM = {"gamma": "weight", "beta": "bias"}


def _canonical(name: str) -> str:
    prefix, _, param = name.rpartition(".")
    return S.join(prefix, CANONICAL_PARAM.get(param, param))


def _fixed_params(model_spec: S.ModelSpec) -> set:
    """Gluon parameter names that are no canonical weights: the gamma and beta an
    affine-free BatchNorm still holds (constant 1 and 0, never trained)."""
    return {S.join(path, p) for path, node in model_spec.walk()
            if isinstance(node, S.BatchNorm) and not node.affine for p in ("gamma", "beta")}


def params_of(model: nn.HybridBlock) -> Dict[str, gluon.Parameter]:
    """Canonical name -> Gluon parameter, BatchNorm statistics included; constants
    (an average pool's divisor map) and an affine-free BatchNorm's fixed gamma and
    beta are not weights."""
    fixed = _fixed_params(model.refnets_spec)
    return {_canonical(k): p for k, p in model._collect_params_with_prefix().items()
            if not isinstance(p, gluon.Constant) and k not in fixed}


def get_weights(model: nn.HybridBlock) -> Weights:
    return {k: p.data().asnumpy() for k, p in params_of(model).items()}


def set_weights(model: nn.HybridBlock, weights: Weights) -> None:
    params = params_of(model)
    check({k: tuple(p.shape) for k, p in params.items()}, weights)
    for name, param in params.items():
        param.set_data(mx.nd.array(np.asarray(weights[name], dtype=param.dtype), ctx=CONTEXT, dtype=param.dtype))


_DEFERRED_GRAD_REQ = "refnets_deferred_grad_req"


def defer_gradients(model: nn.HybridBlock) -> None:
    """Before `initialize`: no gradient array for any parameter (Gluon allocates
    one per trainable parameter, as much memory as the weights, which inference
    never reads). Each trainable parameter keeps its grad_req aside (an attribute
    on the `Parameter`), and `with_gradients` restores it when a gradient is
    first needed."""
    for param in model.collect_params().values():
        if param.grad_req != "null":
            setattr(param, _DEFERRED_GRAD_REQ, param.grad_req)
            param.grad_req = "null"


def _trainable(param: gluon.Parameter) -> bool:
    return param.grad_req != "null" or hasattr(param, _DEFERRED_GRAD_REQ)


def trainable_params(model: nn.HybridBlock) -> Dict[str, gluon.Parameter]:
    """Canonical name -> trainable parameter, with or without its gradient array."""
    return {name: p for name, p in params_of(model).items() if _trainable(p)}


def with_gradients(model: nn.HybridBlock) -> Dict[str, gluon.Parameter]:
    """`trainable_params`, each with its gradient array (allocated here, once,
    for a parameter whose gradients were deferred at build)."""
    params = trainable_params(model)
    for param in params.values():
        deferred = param.__dict__.pop(_DEFERRED_GRAD_REQ, None)
        if deferred is not None:
            param.grad_req = deferred
    return params


def count_params(model: nn.HybridBlock) -> Tuple[int, int]:
    sizes = [(int(np.prod(p.shape)), _trainable(p)) for p in params_of(model).values()]
    return sum(n for n, trainable in sizes if trainable), sum(n for n, _ in sizes)


def dtype_of(model: nn.HybridBlock):
    params = params_of(model)
    if params:
        return next(iter(params.values())).dtype
    return getattr(model, "refnets_dtype", "float32")
