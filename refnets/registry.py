"""Model registry: names -> builder functions that return a `ModelSpec`."""

from __future__ import annotations

import difflib
import inspect
from typing import Callable, Dict, List

from .spec import ModelSpec

Builder = Callable[..., ModelSpec]
_REGISTRY: Dict[str, Builder] = {}


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


class BadOptionError(TypeError):
    pass


# The small input each zoo model accepts (its architecture allows no smaller round size
# for some): fast checks of every model, in the tests and benchmarks.
SMALL_INPUTS = {
    "lenet": (1, 28, 28), "alexnet": (3, 63, 63), "vgg11": (3, 32, 32), "vgg13": (3, 32, 32),
    "vgg16": (3, 32, 32), "vgg19": (3, 32, 32), "nin": (1, 67, 67), "googlenet": (3, 32, 32),
    "resnet18": (3, 32, 32), "resnet34": (3, 32, 32), "resnet50": (3, 32, 32), "resnet101": (3, 32, 32),
    "resnet152": (3, 32, 32), "resnet18v2": (3, 32, 32), "resnet34v2": (3, 32, 32),
    "resnet50v2": (3, 32, 32), "resnet101v2": (3, 32, 32), "resnet152v2": (3, 32, 32),
    "densenet121": (3, 32, 32), "mnist_googlenet": (1, 28, 28), "mnist_resnet": (1, 28, 28),
}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register `fn(**options) -> ModelSpec` under `name`."""

    def decorate(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return decorate


def _load_zoo() -> None:
    from . import zoo  # noqa: F401  (importing registers every family)


def list_models() -> List[str]:
    _load_zoo()
    return sorted(_REGISTRY)


def closest_names(name: str, n: int = 3) -> List[str]:
    return difflib.get_close_matches(name, list_models(), n=n, cutoff=0.5)


def builder(name: str) -> Builder:
    _load_zoo()
    if name not in _REGISTRY:
        hint = closest_names(name)
        suggestion = f" Did you mean {', '.join(hint)}?" if hint else ""
        raise UnknownModelError(f"unknown model {name!r}.{suggestion} Known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def options_of(name: str) -> Dict[str, object]:
    """The options a model takes, with their defaults."""
    params = inspect.signature(builder(name)).parameters
    return {k: p.default for k, p in params.items()}


def get_spec(name: str, input_shape=None, **options) -> ModelSpec:
    """The spec of model `name` built with `options`; `input_shape` (C, H, W)
    overrides the model's default input (its C must match `in_channels`)."""
    fn = builder(name)
    known = options_of(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise BadOptionError(
            f"model {name!r} has no option(s) {unknown}; its options are: "
            + ", ".join(f"{k}={v!r}" for k, v in known.items()))
    try:
        model = fn(**options)
    except (TypeError, ValueError) as err:
        raise BadOptionError(f"model {name!r}: bad option value: {err}") from err
    if input_shape is None:
        return model
    resized = model.with_input_shape(input_shape)
    if resized.input_shape[0] != model.input_shape[0]:
        raise BadOptionError(
            f"model {name!r}: input shape {resized.input_shape} has {resized.input_shape[0]} channels but the "
            f"model takes {model.input_shape[0]}; set the in_channels option instead")
    return resized
