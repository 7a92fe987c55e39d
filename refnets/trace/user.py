"""A user's model named on a command line ("MODULE:CALLABLE --from FRAMEWORK"):
loaded with the framework's reader (which casts it to the run's dtype) and traced.
Imports no framework until a model is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..userload import UserCodeError, load_model, user_frame
from . import trace
from .decompose import Traced
from .graph import UntraceableError


@dataclass
class UserModel:
    """The user's native model (the reference of a verified conversion) and its trace."""

    reference: str  # "MODULE:CALLABLE" as given
    framework: str
    native: object
    traced: Traced


def default_input_shape(model) -> Optional[Tuple[int, int, int]]:
    """(C, H, W) where the model records its input size (a built Keras model's
    `input_shape` is (None, H, W, C)); None where it does not (torch, Gluon)."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == 4 and all(isinstance(v, int) for v in shape[1:]):
        return (shape[3], shape[1], shape[2])
    return None


def model_name(reference: str) -> str:
    """A traced model's name: its module's (a file's stem, a dotted module's last part)."""
    module = reference.rpartition(":")[0]
    stem = module.replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem[:-3] if stem.endswith(".py") else stem.rsplit(".", 1)[-1]
    return stem or "traced"


def load_and_trace(reference, framework: str, input_shape=None, dtype: str = "float32",
                   flag: str = "--from") -> UserModel:
    """Load MODULE:CALLABLE (or take a model or factory) as a `framework` model in
    `dtype` and trace it at `input_shape` (C, H, W; a Keras model's own by default)."""
    from .. import backends

    reader = backends.get_reader(framework)
    with reader.loading(dtype):
        native = load_model(reference, reader, flag=flag)
    native = reader.prepare(native, dtype)
    shape = tuple(input_shape) if input_shape else default_input_shape(native)
    if shape is None:
        raise UserCodeError(f"a {framework} model does not record its input size: give --input-shape C,H,W")
    name = model_name(reference) if isinstance(reference, str) else type(native).__name__
    try:
        traced = trace(native, framework, shape, dtype=dtype, name=name)
    except UntraceableError as err:
        where = user_frame(err.__cause__) if err.__cause__ is not None else ""
        if not where:
            raise
        raise UntraceableError(f"{err} ({where})") from err.__cause__  # the user's forward raised: say where
    return UserModel(str(reference), framework, native, traced)
