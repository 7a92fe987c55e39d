"""pytest-friendly checks for users' own test suites.

    from parity import assert_port_matches

    def test_my_resnet50v2_port():
        assert_port_matches("resnet50v2", my_package.build_resnet50v2, port_backend="torch",
                            input_shape=(3, 64, 64), dtype="float64")

On a mismatch the AssertionError carries the whole port report: the unmatched
layers, or the first divergent layer and what kind of difference it is."""

from __future__ import annotations

from ..reports.port import text
from .run import PortResult, run_port


def assert_port_matches(model, port, port_backend: str = "torch", **options) -> PortResult:
    """Run `parity.run_port(model, port, port_backend, **options)`; raise an
    AssertionError with the report unless the port matches. Returns the result."""
    result = run_port(model, port, port_backend=port_backend, **options)
    if not result.passed:
        raise AssertionError(f"the port does not match {result.model}:\n{text(result)}")
    return result
