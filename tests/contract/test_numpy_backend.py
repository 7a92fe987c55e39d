"""The numpy reference backend: every node type on a hand-computable case, a
finite-difference check of its backward pass, and (where torch is installed)
the whole zoo against the torch backend at the project's bars."""

import importlib.util

import numpy as np
import pytest
from conftest import DEEPER_ONLY, TOLERANCE, relative_error, seeded_input

import refnets
from refnets import shapes
from refnets import spec as S
from refnets import weights as W
from refnets.backends.base import Backend, CapabilityError  # noqa: F401
from refnets.backends.catalog import BACKENDS as CATALOG
from refnets.backends.numpy_ref import BACKEND as NP
from refnets.backends.numpy_ref import DropoutInTrainingError

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")


def one_node(node: S.Node, input_shape, dtype="float64") -> S.ModelSpec:
    return S.ModelSpec(name="one", root=S.Sequential(children=(node,)), input_shape=tuple(input_shape))


def run_one(node, x, weights=None, train=False):
    """The output of a one-node model on the batch x (N, ...)."""
    net = NP.build(one_node(node, x.shape[1:]), "float64")
    if weights is not None:
        NP.set_weights(net, {f"0.{k}": np.asarray(v, float) for k, v in weights.items()})
    return NP.forward(net, x, train=train)[0]


def grid(h, w, c=1):
    """A (1, c, h, w) batch with x[0, k, i, j] = 100k + w*i + j."""
    return (np.arange(c)[:, None, None] * 100.0 + np.arange(h * w).reshape(h, w))[None]


def every_variant(input_shape=(2, 13, 13)) -> S.ModelSpec:
    """One model with every node type and the awkward cases of each: asymmetric
    conv padding, stride, dilation and groups; both BatchNorm variance rules and
    an affine-free one; ceil-mode pools with their own padding; an asymmetric
    AvgPool; both divisor rules; an overlapping adaptive pool; both merges."""
    c = S.Conv2d
    branches = S.Parallel(name="pools", merge="concat", branches=(
        S.AvgPool(name="avg_excl", kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1), ceil_mode=True,
                  count_include_pad=False),
        S.AvgPool(name="avg_asym", kernel=(3, 3), stride=(2, 2), padding=(1, 0, 1, 1), ceil_mode=True),
        S.MaxPool(name="max_asym", kernel=(3, 3), stride=(2, 2), padding=(0, 1, 1, 1), ceil_mode=True),
        S.AdaptiveAvgPool(name="adaptive", output_size=(4, 4)),
    ))
    root = S.Sequential(children=(
        c(name="conv1", out_channels=4, kernel=(3, 2), stride=(1, 2), padding=(2, 0, 1, 2), dilation=(2, 1)),
        S.BatchNorm(name="bn1", momentum=0.25, unbiased_running_var=False),
        S.Activation(name="tanh", kind="tanh"),
        S.ZeroPad(name="pad", padding=(0, 1, 2, 0)),
        S.MaxPool(name="pool1", kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1), ceil_mode=True),
        S.Sequential(name="pre", children=(branches,)),
        c(name="grouped", out_channels=8, kernel=(3, 3), padding=(1, 1, 1, 1), groups=4, bias=False),
        S.BatchNorm(name="bn2", eps=1e-3),
        S.Parallel(name="res", merge="add", branches=(
            S.Identity(name="short"),
            S.Sequential(name="body", children=(c(name="conv", out_channels=8, kernel=(1, 1)),
                                                S.Activation(name="sig", kind="sigmoid"))),
        )),
        S.AdaptiveAvgPool(name="adaptive", output_size=(3, 3)),
        S.Flatten(name="flat"),
        S.Dense(name="fc1", out_features=7),
        S.BatchNorm(name="bn3", affine=False),
        S.Activation(name="relu", kind="relu"),
        S.Dropout(name="drop", rate=0.5),
        S.Parallel(name="heads", merge="add", branches=(S.Dense(name="a", out_features=3),
                                                        S.Dense(name="b", out_features=3, bias=False))),
    ))
    return S.ModelSpec(name="every_variant", root=root, input_shape=input_shape)


def every_variant_with_gap() -> S.ModelSpec:
    """A small model ending in a GlobalAvgPool (every_variant flattens instead)."""
    root = S.Sequential(children=(S.Conv2d(name="conv", out_channels=3, kernel=(3, 3), padding=(1, 1, 1, 1)),
                                  S.Activation(name="relu"), S.GlobalAvgPool(name="gap")))
    return S.ModelSpec(name="gap", root=root, input_shape=(2, 5, 6))


# ------------------------------------------------------------------ the contract


def test_backend_record_and_converters():
    assert isinstance(NP, Backend) and NP.name == "numpy"
    assert NP.missing_converters() == []
    assert set(NP.capabilities) == set(CATALOG["numpy"].capabilities)


def test_weights_round_trip_counts_and_dtypes():
    model = every_variant()
    for dtype in ("float32", "float64"):
        net = NP.build(model, dtype)
        weights = W.init(model, seed=3, dtype="float64")
        NP.set_weights(net, weights)
        got = NP.get_weights(net)
        assert all(got[k].dtype == np.dtype(dtype) for k in got)
        assert all(np.array_equal(got[k], weights[k].astype(dtype)) for k in weights)
        got[next(iter(got))][...] = 7  # a copy: the model is unchanged
        assert np.array_equal(NP.get_weights(net)[next(iter(got))], weights[next(iter(got))].astype(dtype))
        out, _ = NP.forward(net, seeded_input(model.input_shape, dtype="float64"))
        assert out.dtype == np.dtype(dtype)
    counts = shapes.counts(model)
    assert NP.count_params(net) == (counts.trainable, counts.total)


def test_bad_weights_set_nothing():
    model = every_variant()
    net = NP.build(model, "float64")
    before = NP.get_weights(net)
    bad = W.init(model, seed=5, dtype="float64")
    bad["conv1.weight"] = bad["conv1.weight"][:, :1]
    del bad["fc1.bias"]
    bad["nope"] = np.zeros(1)
    with pytest.raises(W.WeightMismatchError, match="conv1.weight.*") as err:
        NP.set_weights(net, bad)
    assert "fc1.bias" in str(err.value) and "nope" in str(err.value)
    after = NP.get_weights(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_too_small_input_and_wrong_input_shape():
    with pytest.raises(refnets.InputTooSmallError):
        NP.build(refnets.get_spec("lenet", input_shape=(1, 8, 8)))
    net = NP.build(refnets.get_spec("lenet"))
    with pytest.raises(ValueError, match="built for inputs"):
        NP.forward(net, np.zeros((1, 1, 30, 30)))


def test_capture_returns_copies_and_names_unknown_paths():
    model = every_variant()
    net = NP.build(model, "float64")
    x = seeded_input(model.input_shape, dtype="float64")
    paths = ["conv1", "pre.pools.max_asym", "res", "heads", ""]
    out, acts = NP.forward(net, x, capture=paths)
    assert set(acts) == set(paths)
    infos = shapes.infer(model)
    assert all(acts[p].shape == (2,) + infos[p].out_shape for p in paths)
    np.testing.assert_array_equal(acts[""], out)
    assert not np.shares_memory(acts["heads"], out)
    with pytest.raises(KeyError, match="nowhere"):
        NP.forward(net, x, capture=["conv1", "nowhere"])


def test_train_forward_uses_batch_statistics_and_leaves_the_model_unchanged():
    model, _ = S.without_dropout(every_variant())
    net = NP.build(model, "float64")
    before = NP.get_weights(net)
    x = seeded_input(model.input_shape, batch=3, dtype="float64")
    _, acts = NP.forward(net, x, capture=["bn1"], train=True)
    assert np.allclose(acts["bn1"].mean(axis=(0, 2, 3)), before["bn1.bias"], atol=1e-12)
    after = NP.get_weights(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_batchnorm_training_needs_two_values_per_channel():
    with pytest.raises(ValueError, match="more than one value"):
        run_one(S.BatchNorm(), np.ones((1, 3)), train=True)


def test_dropout_is_identity_in_inference_and_refused_in_training():
    x = seeded_input((5,), dtype="float64")
    np.testing.assert_array_equal(run_one(S.Dropout(rate=0.5), x), x)
    with pytest.raises(DropoutInTrainingError, match="without_dropout"):
        run_one(S.Dropout(rate=0.5), x, train=True)


# -------------------------------------------------------- each node, by hand


def test_conv_2x2_on_a_4x4_grid():
    x = grid(4, 4)
    out = run_one(S.Conv2d(out_channels=1, kernel=(2, 2)), x, {"weight": [[[[1, 2], [3, 4]]]], "bias": [0.5]})
    g = x[0, 0]
    expected = g[:-1, :-1] + 2 * g[:-1, 1:] + 3 * g[1:, :-1] + 4 * g[1:, 1:] + 0.5
    np.testing.assert_array_equal(out[0, 0], expected)


def test_conv_asymmetric_padding_stride_dilation_groups_against_loops():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6))
    node = S.Conv2d(out_channels=6, kernel=(2, 3), stride=(2, 1), padding=(1, 0, 2, 1), dilation=(2, 2), groups=2)
    w = rng.standard_normal((6, 2, 2, 3))
    b = rng.standard_normal(6)
    out = run_one(node, x, {"weight": w, "bias": b})
    xp = np.pad(x, ((0, 0), (0, 0), (1, 0), (2, 1)))
    oh, ow = (xp.shape[2] - 3) // 2 + 1, xp.shape[3] - 5 + 1
    expected = np.zeros((2, 6, oh, ow))
    for o in range(6):
        g = o // 3
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, 2 * g:2 * g + 2, 2 * i:2 * i + 3:2, j:j + 5:2]
                expected[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3)) + b[o]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_dense_and_flatten_order():
    x = grid(2, 3, c=2)  # flatten: channel 0's rows first
    out = run_one(S.Flatten(), x)
    np.testing.assert_array_equal(out[0], [0, 1, 2, 3, 4, 5, 100, 101, 102, 103, 104, 105])
    params = {"weight": [[1, 0, -1], [0, 2, 0]], "bias": [1, 2]}
    out = run_one(S.Dense(out_features=2), np.array([[1.0, 2.0, 3.0]]), params)
    np.testing.assert_array_equal(out, [[-1, 6]])


def test_batchnorm_inference_and_affine_free():
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    params = {"weight": [2.0, 3.0], "bias": [1.0, -1.0], "running_mean": [1.0, 2.0], "running_var": [3.0, 15.0]}
    out = run_one(S.BatchNorm(eps=1.0), x, params)
    np.testing.assert_allclose(out, [[1.0, -1.0], [3.0, 2.0]], rtol=1e-15)
    out = run_one(S.BatchNorm(eps=1.0, affine=False), x, {"running_mean": [1.0, 2.0], "running_var": [3.0, 15.0]})
    np.testing.assert_allclose(out, [[0.0, 0.0], [1.0, 1.0]], rtol=1e-15)


def test_activations():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(run_one(S.Activation(kind="relu"), x), [[0, 0, 3]])
    np.testing.assert_allclose(run_one(S.Activation(kind="sigmoid"), x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(run_one(S.Activation(kind="tanh"), x), np.tanh(x), rtol=1e-15)


def test_ceil_mode_max_pool_with_padding_never_picks_the_padding():
    node = S.MaxPool(kernel=(2, 2), stride=(2, 2), padding=(1, 1, 1, 1), ceil_mode=True)
    # windows start at -1, 1, 3 (a 4th would start in the bottom padding): rows {0}, {1, 2}, {3}
    np.testing.assert_array_equal(run_one(node, grid(4, 4))[0, 0], [[0, 2, 3], [8, 10, 11], [12, 14, 15]])
    negative = -1 - np.array([[0, 1, 3], [4, 5, 7], [12, 13, 15]])  # the window's smallest grid value wins
    np.testing.assert_array_equal(run_one(node, -1 - grid(4, 4))[0, 0], negative)


def test_avg_pool_divisors_at_the_border():
    x = grid(4, 4)
    excl = run_one(S.AvgPool(kernel=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1), count_include_pad=False), x)
    incl = run_one(S.AvgPool(kernel=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1)), x)
    assert excl[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4 and excl[0, 0, 1, 1] == 5
    assert incl[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 9 and incl[0, 0, 3, 3] == (10 + 11 + 14 + 15) / 9
    # ceil mode: the overhang beyond the padding is not counted, even with count_include_pad
    ones = np.ones((1, 1, 5, 5))
    ceil = S.AvgPool(kernel=(2, 2), stride=(2, 2), ceil_mode=True)
    np.testing.assert_array_equal(run_one(ceil, ones), np.ones((1, 1, 3, 3)))


def test_adaptive_pool_5_to_3_and_global_pool():
    x = np.broadcast_to(np.arange(5.0)[:, None], (5, 5))[None, None]  # x[i, j] = i
    out = run_one(S.AdaptiveAvgPool(output_size=(3, 1)), x)  # rows [0, 2), [1, 4), [3, 5)
    np.testing.assert_array_equal(out[0, 0, :, 0], [0.5, 2.0, 3.5])
    np.testing.assert_array_equal(run_one(S.GlobalAvgPool(), grid(2, 2, c=2)), [[1.5, 101.5]])


def test_zero_pad_identity_and_merges():
    x = grid(2, 2)
    padded = run_one(S.ZeroPad(padding=(1, 0, 0, 2)), x)[0, 0]
    np.testing.assert_array_equal(padded, [[0, 0, 0, 0], [0, 1, 0, 0], [2, 3, 0, 0]])
    np.testing.assert_array_equal(run_one(S.Identity(), x), x)
    cat = S.Parallel(branches=(S.Identity(), S.ZeroPad(padding=(0, 0, 0, 0))), merge="concat")
    np.testing.assert_array_equal(run_one(cat, x), np.concatenate([x, x], axis=1))
    add = S.Parallel(branches=(S.Identity(), S.Identity(name="b")), merge="add")
    np.testing.assert_array_equal(run_one(add, x), 2 * x)


# -------------------------------------------------- gradients by finite differences


def _loss(net, x, labels):
    from refnets.backends.numpy_ref import ops

    return ops.cross_entropy(NP.forward(net, x)[0], labels)[0]


@pytest.mark.parametrize("model", [every_variant(), every_variant_with_gap()], ids=["every_variant", "gap"])
def test_inference_gradients_match_finite_differences(model):
    net = NP.build(model, "float64")
    NP.set_weights(net, W.init(model, seed=2, dtype="float64"))
    x = seeded_input(model.input_shape, batch=2, dtype="float64")
    labels = np.array([0, 2])
    grads = NP.gradients(net, x, labels)
    rng = np.random.default_rng(0)
    h = 1e-6
    checks = [("input", x, grads.input)] + [(k, net.params[k], grads.params[k]) for k in grads.params]
    for name, array, grad in checks:
        for _ in range(3):
            idx = tuple(rng.integers(0, s) for s in array.shape)
            old = array[idx]
            array[idx] = old + h
            up = _loss(net, x, labels)
            array[idx] = old - h
            down = _loss(net, x, labels)
            array[idx] = old
            assert abs((up - down) / (2 * h) - grad[idx]) <= 1e-6 * max(1.0, np.abs(grad).max()), name


# --------------------------------------------------------------- against torch


ZOO_INPUTS = {"lenet": (1, 28, 28), "alexnet": (3, 63, 63), "nin": (1, 67, 67), "googlenet": (3, 40, 40),
              "mnist_googlenet": (1, 28, 28), "mnist_resnet": (1, 28, 28)}
BIG = ("vgg13", "vgg16", "vgg19")  # 130M parameters at 32x32: float32 only (vgg11 stands for them in float64)


def zoo_input(name):
    return ZOO_INPUTS.get(name, (3, 32, 32))


def zoo_cases():
    for name in refnets.list_models():
        for dtype in ("float32", "float64"):
            if dtype == "float64" and name in BIG:
                continue
            marks = [needs_torch] + ([pytest.mark.slow] if name in DEEPER_ONLY else [])
            yield pytest.param(name, dtype, id=f"{name}-{dtype}", marks=marks)


def torch_twin(model, dtype, weights):
    from refnets import backends

    T = backends.get("torch")
    net = T.build(model, dtype)
    T.set_weights(net, weights)
    return T, net


@pytest.mark.parametrize("name,dtype", list(zoo_cases()))
def test_zoo_forward_agrees_with_torch(name, dtype):
    model = refnets.get_spec(name, input_shape=zoo_input(name))
    weights = W.init(model, seed=1, dtype=dtype)
    net = NP.build(model, dtype)
    NP.set_weights(net, weights)
    x = seeded_input(model.input_shape, batch=2, dtype=dtype)
    ours, _ = NP.forward(net, x)
    del net
    T, twin = torch_twin(model, dtype, weights)
    theirs, _ = T.forward(twin, x)
    assert ours.dtype == np.dtype(dtype)
    assert relative_error(ours, theirs) <= TOLERANCE[dtype]


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_variant_forward_and_captures_agree_with_torch(dtype):
    model, _ = S.without_dropout(every_variant())
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
        for p in paths:
            assert relative_error(acts[p], tacts[p]) <= TOLERANCE[dtype], p


def _node_scales(grads):
    scales = {}
    for name, grad in grads.items():
        node = name.rsplit(".", 1)[0]
        scales[node] = max(scales.get(node, 0.0), float(np.abs(grad).max()))
    return scales


def assert_gradients_agree(ours, theirs, bar):
    assert abs(ours.loss - theirs.loss) <= bar * max(1.0, abs(theirs.loss))
    assert relative_error(ours.logits, theirs.logits) <= bar
    assert relative_error(ours.input, theirs.input) <= bar
    assert set(ours.params) == set(theirs.params)
    scales = _node_scales(theirs.params)
    for name, grad in theirs.params.items():
        scale = scales[name.rsplit(".", 1)[0]] or 1.0
        assert float(np.abs(ours.params[name] - grad).max()) / scale <= bar, name


GRAD_MODELS = {"lenet": lambda: refnets.get_spec("lenet"),
               "resnet18": lambda: refnets.get_spec("resnet18", input_shape=(3, 32, 32)),
               "googlenet": lambda: refnets.get_spec("googlenet", input_shape=(3, 40, 40)),
               "every_variant": every_variant}


@needs_torch
@pytest.mark.parametrize("train", [False, True], ids=["inference", "train"])
@pytest.mark.parametrize("name", list(GRAD_MODELS))
def test_gradients_and_running_statistics_agree_with_torch(name, train):
    model, _ = S.without_dropout(GRAD_MODELS[name]())
    weights = W.init(model, seed=1, dtype="float64")
    net = NP.build(model, "float64")
    NP.set_weights(net, weights)
    T, twin = torch_twin(model, "float64", weights)
    x = seeded_input(model.input_shape, batch=3, dtype="float64")
    labels = np.array([0, 2, 1])
    assert_gradients_agree(NP.gradients(net, x, labels, train), T.gradients(twin, x, labels, train), 1e-10)
    ours, theirs = NP.get_weights(net), T.get_weights(twin)  # running statistics updated (train) or not
    assert all(relative_error(ours[k], theirs[k]) <= 1e-10 for k in theirs)


@needs_torch
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_training_steps_agree_with_torch(optimizer):
    model, _ = S.without_dropout(every_variant())
    weights = W.init(model, seed=1, dtype="float64")
    net = NP.build(model, "float64")
    NP.set_weights(net, weights)
    T, twin = torch_twin(model, "float64", weights)
    ours, theirs = NP.Trainer(net, optimizer, 0.1, 0.9), T.Trainer(twin, optimizer, 0.1, 0.9)
    rng = np.random.default_rng(4)
    for _ in range(3):
        x = rng.standard_normal((4,) + model.input_shape)
        labels = rng.integers(0, 3, 4)
        assert abs(ours.step(x, labels) - theirs.step(x, labels)) <= 1e-10
    a, b = NP.get_weights(net), T.get_weights(twin)
    assert all(relative_error(a[k], b[k]) <= 1e-10 for k in b)
    with pytest.raises(ValueError, match="optimizer"):
        NP.Trainer(net, "adam", 0.1)
