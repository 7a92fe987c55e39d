"""Every backend against the spec and against every other backend."""

import numpy as np
import pytest
import refnets
from refnets import backends, shapes
from refnets import weights as W

from conftest import INSTALLED, SMALL_INPUTS, TOLERANCE, backend_params, relative_error, seeded_input

MODELS = sorted(SMALL_INPUTS)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("name", MODELS)
def test_native_param_count_equals_spec(backend, name):
    model_spec = refnets.get_spec(name, input_shape=SMALL_INPUTS[name])
    impl = backends.get(backend)
    expected = shapes.counts(model_spec)
    assert impl.count_params(impl.build(model_spec)) == (expected.trainable, expected.total)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["lenet", "nin", "resnet18"])
def test_round_trip_is_bit_identical(backend, dtype, name):
    shape = (3, 32, 32) if name == "resnet18" else SMALL_INPUTS[name]  # resnet18: BatchNorm statistics too
    model_spec = refnets.get_spec(name, input_shape=shape)
    impl = backends.get(backend)
    net = impl.build(model_spec, dtype=dtype)
    original = W.init(model_spec, seed=3, dtype=dtype)
    impl.set_weights(net, original)
    back = impl.get_weights(net)
    assert sorted(back) == sorted(original)
    for key in original:
        assert back[key].dtype == np.dtype(dtype), key
        assert np.array_equal(back[key], original[key]), key


@pytest.mark.parametrize("backend", backend_params())
def test_bad_weights_leave_model_untouched(backend):
    model_spec = refnets.get_spec("lenet")
    impl = backends.get(backend)
    net = impl.build(model_spec)
    before = impl.get_weights(net)
    bad = W.init(model_spec, seed=5)
    bad["fc1.weight"] = bad["fc1.weight"][:, :-1]
    del bad["conv1.bias"]
    bad["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(W.WeightMismatchError) as err:
        impl.set_weights(net, bad)
    message = str(err.value)
    assert "conv1.bias" in message and "extra.weight" in message and "fc1.weight" in message
    after = impl.get_weights(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


# VGG 13 and 19 add only depth to VGG 11/16's code paths; their runs (20 s to a
# minute each, 100M+ parameters in three frameworks) are in the slow set, which keeps
# CI well inside its time: pytest -m slow
SLOW_PAIRS = {(name, dtype) for name in ("vgg13", "vgg19") for dtype in ("float32", "float64")}


def _pair_cases():
    cases = []
    for name in MODELS:
        for dtype in ("float32", "float64"):
            marks = [pytest.mark.slow] if (name, dtype) in SLOW_PAIRS else []
            cases.append(pytest.param(name, dtype, id=f"{name}-{dtype}", marks=marks))
    return cases


@pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends")
@pytest.mark.parametrize("name,dtype", _pair_cases())
def test_every_ordered_pair_agrees(name, dtype):
    """X's own initialisation (BatchNorm statistics perturbed) exported into Y:
    the same input gives the same output, for every ordered pair (X, Y)."""
    options = {"batch_norm": True} if name == "vgg16" else {}
    model_spec = refnets.get_spec(name, input_shape=SMALL_INPUTS[name], **options)
    nets = {b: backends.get(b).build(model_spec, dtype=dtype) for b in INSTALLED}
    own_init = {b: backends.get(b).get_weights(net) for b, net in nets.items()}  # before any copy
    x = seeded_input(model_spec.input_shape, dtype=dtype)
    errors = {}
    for source in INSTALLED:
        exported = W.randomize_batchnorm(own_init[source], seed=7)
        outputs = {}
        for b in INSTALLED:
            backends.get(b).set_weights(nets[b], exported)
            outputs[b], _ = backends.get(b).forward(nets[b], x)
        for target in INSTALLED:
            if target != source:
                out, ref = outputs[target], outputs[source]
                assert out.shape == ref.shape and np.all(np.isfinite(out))
                errors[(source, target)] = relative_error(out, ref)
    worst = max(errors.values())
    assert worst <= TOLERANCE[dtype], errors
