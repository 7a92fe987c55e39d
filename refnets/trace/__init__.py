"""Tracing: a native model (PyTorch, MXNet Gluon, Keras) -> the neutral spec and the
model's own weights in the canonical contract. Each framework's tracer
(`refnets/backends/<framework>/trace.py`) reads the real graph into a
`TracedGraph`; `decompose` makes it series-parallel."""

from .graph import INPUT, TracedGraph, TracedOp, UntraceableError, untraceable  # noqa: F401
