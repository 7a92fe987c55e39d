"""Tracing: a native model (PyTorch, MXNet Gluon, Keras) -> the neutral spec and the
model's own weights in the canonical contract. Each framework's tracer
(`refnets/backends/<framework>/trace.py`) reads the real graph into a
`TracedGraph`; `decompose` makes it series-parallel."""

from .graph import INPUT, TracedGraph, TracedOp, UntraceableError, untraceable  # noqa: F401
from .decompose import Traced, decompose, segment_name  # noqa: F401

FRAMEWORKS = ("torch", "mxnet", "keras")


def trace(model, framework: str, input_shape, dtype: str = "float32", name: str = "traced") -> Traced:
    """A native model -> `Traced` (spec, canonical weights, origins). `framework`:
    "torch", "mxnet" or "keras"; `input_shape`: (C, H, W), channels-first whatever
    the framework. Raises UntraceableError naming the op the vocabulary lacks."""
    import importlib
    import dataclasses

    from ..backends import catalog

    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; tracing reads {', '.join(FRAMEWORKS)}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input shape must be C,H,W, got {input_shape!r}")
    tracer = importlib.import_module(f"{catalog.BACKENDS[framework].package}.trace")
    graph = tracer.graph(model, shape, dtype=dtype)
    graph = dataclasses.replace(graph, name=name)
    return decompose(graph, dtype=dtype)
