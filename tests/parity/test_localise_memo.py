"""The per-node comparison compares a pair of captures once when another node's
pair is the very same memory in both backends, and only then."""

import numpy as np

import refnets
from parity.engine.localise import capture_paths, localise


def test_a_pair_is_reused_only_when_both_sides_are_the_same_memory():
    spec = refnets.get_spec("lenet")
    a, b, c = capture_paths(spec)[:3]
    x = np.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)
    y = x + 1.0  # different values, a different array
    out = {a: x, b: x, c: x}  # b and c: the same memory as a in this backend...
    ref = {a: x, b: x.copy(), c: y}  # ...but in the reference only b's values match, and c's memory differs
    result = localise(spec, ref, out, rtol=1e-6, atol=0.0, paths=[a, b, c])
    first, second, third = (n.comparison for n in result.nodes)
    assert first.passed and second.passed and not third.passed
    assert third.max_abs == 1.0
    same = localise(spec, {a: x, b: x}, {a: x, b: x}, rtol=1e-6, atol=0.0, paths=[a, b])
    assert same.nodes[0].comparison is same.nodes[1].comparison  # compared once
    views = localise(spec, {a: x, b: x[:1]}, {a: x, b: x[:1]}, rtol=1e-6, atol=0.0, paths=[a, b])
    assert views.nodes[0].comparison is not views.nodes[1].comparison  # same start, another shape
