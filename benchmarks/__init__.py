"""Reproducible measurements (not timed tests): `python -m benchmarks.agreement`."""
