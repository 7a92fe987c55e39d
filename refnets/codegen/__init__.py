"""Readable reference source in PyTorch, Keras or MXNet Gluon, generated from a
spec: `generate(spec, framework) -> str`.

The generated module imports only its framework (and the standard library): a
class (Keras: a builder function) per kind of block, with the numbers that differ
between its instances as constructor arguments; stages as loops over a small
stage table; `build(**options)` and `load_canonical(model, path)`, which loads
canonical weights from a safetensors file by name. See `plan` for how blocks
are found.

This package imports no framework.
"""

from __future__ import annotations

from typing import Optional

from .. import spec as S
from .analyse import make_plan

FRAMEWORKS = ("torch", "keras", "mxnet")


def generate(spec: S.ModelSpec, framework: str, origin: Optional[str] = None) -> str:
    """The source of a module that builds `spec` in `framework` (torch, keras, mxnet).
    `origin`: the MODEL argument it came from, for the docstring's command line
    (default: the spec's name)."""
    plan = make_plan(spec, inline_shared_targets=framework == "keras")
    if framework == "torch":
        from .torch_module import generate as emit
    elif framework == "keras":
        from .keras_module import generate as emit
    elif framework == "mxnet":
        from .gluon_module import generate as emit
    else:
        raise ValueError(f"unknown framework {framework!r}; choose from {', '.join(FRAMEWORKS)}")
    return emit(plan, origin or spec.name)


__all__ = ["FRAMEWORKS", "generate", "make_plan"]
