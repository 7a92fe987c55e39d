"""Reproducible measurements (not timed tests): `python -m benchmarks` (latency against
the frameworks' zoos, the parity harness against its parts, memory, start-up) and
`python -m benchmarks.agreement` (cross-backend agreement) and `python -m benchmarks.training`
(gradients, training-mode step and optimiser steps across backends)."""
