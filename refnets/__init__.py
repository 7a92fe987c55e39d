"""refnets: classic CNNs written once as framework-neutral specs, built natively
in PyTorch, MXNet Gluon and Keras 3. Importing this package imports no framework."""

from __future__ import annotations

from .registry import BadOptionError, UnknownModelError, get_spec, list_models, register
from .shapes import InputTooSmallError, counts, infer, output_shape, param_shapes
from .describe import summary
from .weights import WeightFileError, WeightMismatchError

__version__ = "0.1.0"


def build(name: str, backend: str = "torch", dtype: str = "float32", input_shape=None, **options):
    """The native model (torch `nn.Module`, Gluon `HybridBlock`, `keras.Model`) of
    model `name` (a zoo name or a spec file, see `models.resolve`) with `options`,
    built for `input_shape` (default: the model's)."""
    from . import backends, models

    model_spec = models.resolve(name, input_shape=input_shape, options=options)
    return backends.get(backend).build(model_spec, dtype=dtype)


__all__ = [
    "BadOptionError", "InputTooSmallError", "UnknownModelError", "WeightFileError", "WeightMismatchError",
    "build", "counts", "get_spec", "infer", "list_models", "output_shape", "param_shapes", "register", "summary",
]
