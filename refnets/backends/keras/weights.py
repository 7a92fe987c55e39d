"""Canonical weights <-> Keras variables: conv kernels HWIO <-> OIHW, dense
(in, out) <-> (out, in), and a Dense fed by a channels-last Flatten
(keras.applications' VGG: rows in H, W, C order) <-> canonical C, H, W columns.
`ROLES` maps each parameterised kind (`rules.PARAM_KINDS`) to its Keras
attributes and layouts: the backend, the zoo importer and the port reader all use it."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from ... import rules
from ... import spec as S
from ...weights import Weights, check
from .build import ROOT_NAME, bindings_of
from .framework import keras, ops


_TO_CANONICAL = {"conv": (3, 2, 0, 1), "dense": (1, 0), "vector": None}  # HWIO -> OIHW, (in, out) -> (out, in)
# kind -> (canonical role, Keras attribute, layout) of each parameter
ROLES = {
    "conv": (("weight", "kernel", "conv"), ("bias", "bias", "vector")),
    "dense": (("weight", "kernel", "dense"), ("bias", "bias", "vector")),
    "batchnorm": (("weight", "gamma", "vector"), ("bias", "beta", "vector"),
                  ("running_mean", "moving_mean", "vector"), ("running_var", "moving_variance", "vector")),
}


def parameter_slots(model: keras.Model) -> Dict[str, Tuple[keras.Variable, str]]:
    """Canonical name -> (Keras variable, layout) for every parameter."""
    slots = {}
    for path, node in bindings_of(model).spec.walk():
        params = ROLES.get(rules.kind(node), ())
        layer = model.get_layer(path or ROOT_NAME) if params else None
        for canonical, attribute, layout in params:
            variable = getattr(layer, attribute)
            if variable is not None:  # a conv or dense without bias
                slots[S.join(path, canonical)] = (variable, layout)
    return slots


def _permute(array: np.ndarray, order) -> np.ndarray:
    return np.array(array if order is None else np.transpose(array, order), order="C", copy=True)


def _inverse(order):
    return None if order is None else tuple(int(i) for i in np.argsort(order))


# A Keras Dense fed by a channels-last Flatten of an (H, W, C) map (keras.applications'
# VGG): its kernel rows are in H, W, C order, the canonical dense columns in C, H, W.
NHWC_DENSE = "dense_nhwc"


def to_canonical(array: np.ndarray, layout: str, hwc=None) -> np.ndarray:
    """A Keras variable in the canonical layout: "conv" HWIO -> OIHW, "dense"
    (in, out) -> (out, in), "vector" unchanged, NHWC_DENSE (H*W*C, out) ->
    (out, C*H*W) given the flattened map's (H, W, C)."""
    if layout == NHWC_DENSE:
        h, w, c = hwc
        out = np.asarray(array).T.reshape(-1, h, w, c)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2).reshape(out.shape[0], c * h * w))
    return _permute(np.asarray(array), _TO_CANONICAL[layout])


def from_canonical(array: np.ndarray, layout: str, hwc=None) -> np.ndarray:
    """The inverse of `to_canonical`: a canonical array in Keras's layout."""
    if layout == NHWC_DENSE:
        h, w, c = hwc
        out = np.asarray(array).reshape(-1, c, h, w).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(out.reshape(out.shape[0], h * w * c).T)
    return _permute(np.asarray(array), _inverse(_TO_CANONICAL[layout]))


def canonical_shape(shape, layout: str, hwc=None) -> Tuple[int, ...]:
    """The canonical shape of a Keras variable of `shape` in `layout`."""
    if layout == NHWC_DENSE:
        return (int(shape[1]), int(shape[0]))
    order = _TO_CANONICAL[layout]
    return tuple(int(v) for v in shape) if order is None else tuple(int(shape[i]) for i in order)


def get_weights(model: keras.Model) -> Weights:
    return {name: to_canonical(ops.convert_to_numpy(var), layout) for name, (var, layout) in parameter_slots(model).items()}


def set_weights(model: keras.Model, weights: Weights) -> None:
    slots = parameter_slots(model)
    check({name: canonical_shape(var.shape, layout) for name, (var, layout) in slots.items()}, weights)
    for name, (var, layout) in slots.items():
        var.assign(from_canonical(np.asarray(weights[name], dtype=var.dtype), layout))
