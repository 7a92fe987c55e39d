"""A MODEL argument, as both command lines (`python -m refnets`, `python -m parity`)
and the Python API take it, turned into a `ModelSpec`: a zoo model's name (with its
options), a spec file (a path ending in .json, see `specfile`), or a ModelSpec."""

from __future__ import annotations

from typing import Optional, Union

from . import registry, specfile
from . import spec as S


def resolve(model: Union[str, S.ModelSpec], input_shape=None, options: Optional[dict] = None) -> S.ModelSpec:
    """The spec of `model` at `input_shape` (default: the model's own).

    A zoo name is built with `options` (`registry.get_spec`). A spec file holds its
    model as written: options are refused (edit the file instead), and an
    `input_shape` must keep the file's channel count. Raises UnknownModelError,
    BadOptionError or specfile.SpecFileError (all usage errors)."""
    if isinstance(model, S.ModelSpec):
        return model.with_input_shape(input_shape) if input_shape else model
    if not specfile.looks_like_spec_file(model):
        return registry.get_spec(model, input_shape=input_shape, **(options or {}))
    if options:
        raise registry.BadOptionError(
            f"{model}: options ({', '.join(sorted(options))}) apply to zoo models; a spec file holds its model "
            f"as written, so edit the file instead")
    spec = specfile.load(model)
    if input_shape is None:
        return spec
    resized = spec.with_input_shape(input_shape)
    if resized.input_shape[0] != spec.input_shape[0]:
        raise registry.BadOptionError(
            f"{model}: input shape {resized.input_shape} has {resized.input_shape[0]} channels but the model "
            f"in the file takes {spec.input_shape[0]}")
    return resized
