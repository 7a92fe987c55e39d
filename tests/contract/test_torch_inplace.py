"""The torch backend's in-place ReLUs and residual adds (refnets/backends/torch/inplace.py):
they run only where nothing else reads the overwritten tensor, never change a
result, and a capturing forward still sees every node's own output."""

import numpy as np
import pytest

from refnets import backends
from refnets import weights as W
from refnets import spec as S
from refnets.zoo.layers import bn, conv, dense, relu, seq

torch = pytest.importorskip("torch")


def _spec() -> S.ModelSpec:
    """An add whose first branch is the identity, beside a branch that opens with a
    ReLU (it reads the Parallel's input, shared with the identity branch: not in
    place; nor may that add accumulate into its identity branch), then a residual
    block whose ReLUs after BatchNorm may run in place and whose add may
    accumulate into the body's output."""
    body = seq("body", conv("conv1", 4, 3, 1, 1, bias=False), bn("bn1"), relu("relu1"),
               conv("conv2", 4, 3, 1, 1, bias=False), bn("bn2"))
    first = S.Parallel(name="first", branches=(S.Identity(name="skip"), seq("a", relu("relu0"), conv("c", 4, 1))),
                       merge="add")
    root = seq("", conv("stem", 4, 3, 1, 1), first,
               S.Parallel(name="res", branches=(body, S.Identity(name="shortcut")), merge="add"), relu("relu"),
               S.GlobalAvgPool(name="pool"), dense("fc", 3))
    return S.ModelSpec(name="inplace_probe", root=root, input_shape=(4, 8, 8))


def _modules(net):
    return dict(net.named_modules())


def test_in_place_only_where_the_input_is_fresh_and_results_unchanged():
    spec = _spec()
    impl, reference = backends.get("torch"), backends.get("numpy")
    net = impl.build(spec, dtype="float64")
    weights = W.randomize_batchnorm(W.init(spec, seed=3, dtype="float64"), seed=4)
    impl.set_weights(net, weights)
    ref_net = reference.build(spec, dtype="float64")
    reference.set_weights(ref_net, weights)
    modules = _modules(net)
    assert modules["first.a.relu0"].inplace is False  # reads the branch input, shared with "skip"
    assert modules["first"].inplace is False  # its first branch's output is its input: no accumulating into it
    assert modules["res.body.relu1"].inplace is True and modules["relu"].inplace is True
    assert modules["res"].inplace is True

    x = np.random.default_rng(0).standard_normal((2, 4, 8, 8))
    x_before = x.copy()
    paths = [p for p, _ in spec.walk() if p]
    out, _ = impl.forward(net, x)
    captured_out, acts = impl.forward(net, x, capture=paths)
    expected, ref_acts = reference.forward(ref_net, x, capture=paths)
    np.testing.assert_array_equal(x, x_before)  # the caller's array is never written to
    np.testing.assert_array_equal(out, captured_out)  # in place or not: the same values
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    for path in paths:  # every node's own output, not what a later in-place op made of it
        np.testing.assert_allclose(acts[path], ref_acts[path], rtol=1e-10, atol=1e-12, err_msg=path)
    assert (acts["res.body.bn1"] < 0).any()  # what relu1 would have overwritten
    assert np.shares_memory(acts["res.body"], acts["res.body.bn2"])  # captures are the tensors: no copies
    assert all(m.inplace for m in net.refnets_inplace)  # switched back on after the capture


def test_the_add_is_out_of_place_under_autograd():
    """Sigmoid's backward needs its own output: adding into it in place while
    autograd records would make the backward pass raise."""
    body = seq("body", conv("conv", 4, 3, 1, 1), S.Activation(name="sig", kind="sigmoid"))
    root = seq("", conv("stem", 4, 3, 1, 1), S.Parallel(name="res", branches=(body, S.Identity(name="skip")),
                                                          merge="add"), S.GlobalAvgPool(name="pool"), dense("fc", 3))
    spec = S.ModelSpec(name="sigmoid_residual", root=root, input_shape=(4, 8, 8))
    impl = backends.get("torch")
    net = impl.build(spec, dtype="float64")
    assert _modules(net)["res"].inplace is True
    x = np.random.default_rng(1).standard_normal((2, 4, 8, 8))
    grads = impl.gradients(net, x, np.array([0, 2]))
    assert np.isfinite(grads.loss) and grads.input.shape == x.shape
