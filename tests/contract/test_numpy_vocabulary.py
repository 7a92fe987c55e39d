"""The numpy reference on the vocabulary added for traced models (softmax,
TensorFlow's 'same' padding, GlobalAvgPool keepdims, a shared layer): small cases
by hand, its backward pass by finite differences, and against the torch backend
(forward, captures, gradients, running statistics and training steps)."""

import numpy as np
import pytest
from conftest import TOLERANCE, relative_error, seeded_input
from test_numpy_backend import NP, _loss, assert_gradients_agree, grid, needs_torch, run_one, torch_twin

from refnets import shapes
from refnets import spec as S
from refnets import weights as W


def new_vocabulary() -> S.ModelSpec:
    """Every addition in one model: a strided 'same' conv on an even and an odd
    size, softmax over channels, a conv applied in both branches of a concat,
    'same' pools (the average one without the padding in its divisor), a
    keepdims global pool, a BatchNorm shared by two places, a final softmax."""
    c = S.Conv2d
    twin = S.Parallel(name="twin", branches=(
        c(name="conv", out_channels=3, kernel=(3, 3), padding=(1, 1, 1, 1)),
        S.Sequential(name="other", children=(S.MaxPool(name="pool", kernel=(3, 3), stride=(1, 1), padding=S.SAME),
                                             S.Shared(name="again", target="twin.conv")))))
    root = S.Sequential(children=(
        c(name="stem", out_channels=4, kernel=(3, 3), stride=(2, 2), padding=S.SAME),
        S.Activation(name="soft", kind="softmax"),
        twin,
        S.AvgPool(name="avg", kernel=(3, 3), stride=(2, 2), padding=S.SAME, count_include_pad=False),
        S.MaxPool(name="max", kernel=(2, 2), stride=(2, 2), padding=S.SAME),
        S.GlobalAvgPool(name="gap", keepdims=True),
        S.Flatten(name="flat"),
        S.Dense(name="fc1", out_features=6),
        S.BatchNorm(name="bn", momentum=0.3),
        S.Activation(name="relu1"),
        S.Dense(name="fc_mid", out_features=6),
        S.Shared(name="bn_again", target="bn"),
        S.Activation(name="relu2"),
        S.Dense(name="head", out_features=3),
        S.Activation(name="probs", kind="softmax"),
    ))
    return S.ModelSpec(name="new_vocabulary", root=root, input_shape=(2, 10, 9))


# ------------------------------------------------------------------- by hand


def test_softmax_over_features_and_channels():
    x = np.array([[1.0, 2.0, 3.0]])
    e = np.exp(x - 3.0)
    np.testing.assert_allclose(run_one(S.Activation(kind="softmax"), x), e / e.sum(), rtol=1e-15)
    maps = grid(2, 3, c=2) / 100.0  # channel 1 is channel 0 plus 1 everywhere
    out = run_one(S.Activation(kind="softmax"), maps)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(out[0, 1], np.full((2, 3), np.e / (1 + np.e)), rtol=1e-15)


def test_same_pools_and_keepdims_on_a_grid():
    x = grid(4, 5)  # 'same' 3x3/2: padding (0, 1) on the 4 rows, (1, 1) on the 5 columns
    out = run_one(S.MaxPool(kernel=(3, 3), stride=(2, 2), padding=S.SAME), x)[0, 0]
    np.testing.assert_array_equal(out, [[11, 13, 14], [16, 18, 19]])  # -inf never wins
    assert run_one(S.MaxPool(kernel=(3, 3), stride=(2, 2), padding=S.SAME), -1 - x)[0, 0, 1, 2] == -1 - 13
    avg = run_one(S.AvgPool(kernel=(3, 3), stride=(2, 2), padding=S.SAME, count_include_pad=False), x)[0, 0]
    assert avg[0, 0] == np.mean(x[0, 0, 0:3, 0:2]) and avg[1, 1] == np.mean(x[0, 0, 2:4, 1:4])
    keep = run_one(S.GlobalAvgPool(keepdims=True), grid(2, 2, c=2))
    np.testing.assert_array_equal(keep, [[[[1.5]], [[101.5]]]])


def test_a_shared_dense_applies_the_same_weights_twice():
    model = S.ModelSpec(name="twice", input_shape=(2,), root=S.Sequential(children=(
        S.Dense(name="fc", out_features=2), S.Shared(name="again", target="fc"))))
    net = NP.build(model, "float64")
    w, b = np.array([[1.0, 2.0], [0.0, -1.0]]), np.array([0.5, 1.0])
    NP.set_weights(net, {"fc.weight": w, "fc.bias": b})
    x = np.array([[1.0, 3.0]])
    out, acts = NP.forward(net, x, capture=["fc", "again"])
    np.testing.assert_array_equal(acts["fc"], x @ w.T + b)
    np.testing.assert_array_equal(out, (x @ w.T + b) @ w.T + b)
    np.testing.assert_array_equal(acts["again"], out)
    assert sorted(NP.get_weights(net)) == ["fc.bias", "fc.weight"] and NP.count_params(net) == (6, 6)


# ------------------------------------------------------- finite differences


def test_gradients_match_finite_differences():
    model = new_vocabulary()
    net = NP.build(model, "float64")
    NP.set_weights(net, W.init(model, seed=2, dtype="float64"))
    x = seeded_input(model.input_shape, batch=2, dtype="float64")
    labels = np.array([0, 2])
    grads = NP.gradients(net, x, labels)
    assert sorted(grads.params) == sorted(k for k in shapes.param_shapes(model) if not k.endswith("running_var")
                                          and not k.endswith("running_mean"))
    rng = np.random.default_rng(0)
    h = 1e-6
    for name, array, grad in [("input", x, grads.input)] + [(k, net.params[k], g) for k, g in grads.params.items()]:
        for _ in range(4):
            idx = tuple(rng.integers(0, s) for s in array.shape)
            old = array[idx]
            array[idx] = old + h
            up = _loss(net, x, labels)
            array[idx] = old - h
            down = _loss(net, x, labels)
            array[idx] = old
            assert abs((up - down) / (2 * h) - grad[idx]) <= 1e-6 * max(1.0, np.abs(grad).max()), name


# ------------------------------------------------------------------ against torch


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_and_captures_agree_with_torch(dtype):
    model = new_vocabulary()
    weights = W.init(model, seed=1, dtype=dtype)
    net = NP.build(model, dtype)
    NP.set_weights(net, weights)
    T, twin = torch_twin(model, dtype, weights)
    x = seeded_input(model.input_shape, batch=3, dtype=dtype)
    paths = [p for p, _ in model.walk()]
    for train in (False, True):
        ours, acts = NP.forward(net, x, capture=paths, train=train)
        theirs, tacts = T.forward(twin, x, capture=paths, train=train)
        assert relative_error(ours, theirs) <= TOLERANCE[dtype]
        for p in paths:  # the shared nodes' own outputs, and their targets' first calls
            assert acts[p].shape == tacts[p].shape, p
            assert relative_error(acts[p], tacts[p]) <= TOLERANCE[dtype], p
    assert not np.allclose(acts["twin.conv"][:, :3], acts["twin.other.again"])


@needs_torch
@pytest.mark.parametrize("train", [False, True], ids=["inference", "train"])
def test_gradients_and_running_statistics_agree_with_torch(train):
    model = new_vocabulary()
    weights = W.init(model, seed=1, dtype="float64")
    net = NP.build(model, "float64")
    NP.set_weights(net, weights)
    T, twin = torch_twin(model, "float64", weights)
    x = seeded_input(model.input_shape, batch=3, dtype="float64")
    labels = np.array([0, 2, 1])
    assert_gradients_agree(NP.gradients(net, x, labels, train), T.gradients(twin, x, labels, train), 1e-10)
    ours, theirs = NP.get_weights(net), T.get_weights(twin)  # a shared BatchNorm: updated once per use
    assert sorted(ours) == sorted(theirs) == sorted(weights)
    assert all(relative_error(ours[k], theirs[k]) <= 1e-10 for k in theirs)
    assert np.array_equal(ours["bn.running_mean"], weights["bn.running_mean"]) != train


@needs_torch
def test_training_steps_agree_with_torch():
    model = new_vocabulary()
    weights = W.init(model, seed=1, dtype="float64")
    net = NP.build(model, "float64")
    NP.set_weights(net, weights)
    T, twin = torch_twin(model, "float64", weights)
    ours, theirs = NP.Trainer(net, "momentum", 0.1, 0.9), T.Trainer(twin, "momentum", 0.1, 0.9)
    rng = np.random.default_rng(4)
    for _ in range(3):
        x = rng.standard_normal((4,) + model.input_shape)
        labels = rng.integers(0, 3, 4)
        assert abs(ours.step(x, labels) - theirs.step(x, labels)) <= 1e-10
    a, b = NP.get_weights(net), T.get_weights(twin)
    assert all(relative_error(a[k], b[k]) <= 1e-10 for k in b)
    assert not np.array_equal(a["twin.conv.weight"], weights["twin.conv.weight"])
