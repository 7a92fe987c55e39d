"""The backend contract, node type by node type: every backend builds every node
type of the vocabulary, round-trips its weights bit for bit and agrees with the
other backends on it; a coverage test names any backend that lacks a converter."""

import numpy as np
import pytest
from refnets import backends, rules
from refnets import spec as S
from refnets import weights as W
from refnets.backends import catalog

from conftest import TOLERANCE, relative_error, seeded_input

AVAILABLE = [name for name in backends.BACKENDS if backends.is_installed(name)]


def _conv(name, **kw):
    base = dict(out_channels=4, kernel=(3, 3))
    return S.Conv2d(name=name, **{**base, **kw})


def _model(name, *nodes, input_shape=(4, 9, 9)):
    return S.ModelSpec(name=name, root=S.Sequential(children=tuple(nodes)), input_shape=input_shape)


# One small model per node type (and per variant on which frameworks differ). The
# dict's keys name the node type each case exercises; the coverage test checks
# that together they cover the whole vocabulary.
CASES = {
    "Conv2d": _model("conv", _conv("c", stride=(2, 1), padding=(0, 1, 2, 1), dilation=(1, 2))),
    "Conv2d-groups-nobias": _model("conv_groups", _conv("c", groups=2, bias=False, padding=(1, 1, 1, 1))),
    "Conv2d-strided-dilated": _model("conv_sd", _conv("c", stride=(2, 2), dilation=(2, 2), padding=(2, 2, 2, 2))),
    "Dense": _model("dense", S.Flatten(name="f"), S.Dense(name="d", out_features=5)),
    "BatchNorm": _model("bn", S.BatchNorm(name="bn", eps=1e-3, momentum=0.3)),
    "BatchNorm-affine-free": _model("bn_free", S.BatchNorm(name="bn", affine=False)),
    "BatchNorm-vector": _model("bn_vec", S.GlobalAvgPool(name="g"), S.BatchNorm(name="bn")),
    "Activation": _model("acts", S.Activation(name="r", kind="relu"), S.Activation(name="s", kind="sigmoid"),
                         S.Activation(name="t", kind="tanh")),
    "MaxPool": _model("maxpool", S.MaxPool(name="p", kernel=(3, 3), stride=(2, 2), padding=(1, 0, 1, 1),
                                           ceil_mode=True)),
    "AvgPool": _model("avgpool", S.AvgPool(name="p", kernel=(3, 2), stride=(2, 2), padding=(1, 1, 0, 1),
                                           ceil_mode=True, count_include_pad=False)),
    "AvgPool-include-pad": _model("avgpool_pad", S.AvgPool(name="p", kernel=(3, 3), stride=(2, 2),
                                                           padding=(1, 1, 1, 1))),
    "GlobalAvgPool": _model("gap", S.GlobalAvgPool(name="g")),
    "AdaptiveAvgPool": _model("adaptive", S.AdaptiveAvgPool(name="down", output_size=(4, 3)),
                              S.AdaptiveAvgPool(name="up", output_size=(5, 7))),
    "ZeroPad": _model("zeropad", S.ZeroPad(name="z", padding=(1, 0, 2, 3))),
    "Flatten": _model("flatten", S.Flatten(name="f")),
    "Dropout": _model("dropout", S.Dropout(name="d", rate=0.5)),
    "Identity": _model("identity", _conv("c", padding=(1, 1, 1, 1)), S.Identity(name="i")),
    "Parallel": _model("parallel", S.Parallel(name="add", merge="add", branches=(
        _conv("a", padding=(1, 1, 1, 1)), S.Identity(name="skip", ))), S.Parallel(name="cat", branches=(
            _conv("a", out_channels=3, kernel=(1, 1)), S.MaxPool(name="b", kernel=(3, 3), stride=(1, 1),
                                                                 padding=(1, 1, 1, 1))))),
    "Activation-softmax": _model("softmax", S.Activation(name="map", kind="softmax"), S.Flatten(name="f"),
                                 S.Dense(name="d", out_features=6), S.Activation(name="vec", kind="softmax")),
    # 'same' by TensorFlow's rule: stride 2 on an even (10) and an odd (9) size, so the
    # padding is asymmetric on one axis and symmetric on the other; then a dilated one.
    "Conv2d-same": _model("conv_same", _conv("even_odd", stride=(2, 2), padding=S.SAME),
                          _conv("dilated", kernel=(3, 2), dilation=(2, 3), padding=S.SAME), input_shape=(4, 10, 9)),
    "MaxPool-same": _model("maxpool_same", S.MaxPool(name="p", kernel=(3, 3), stride=(2, 2), padding=S.SAME),
                           S.MaxPool(name="q", kernel=(2, 3), stride=(1, 2), padding=S.SAME), input_shape=(4, 10, 9)),
    "AvgPool-same": _model("avgpool_same", S.AvgPool(name="p", kernel=(3, 3), stride=(2, 2), padding=S.SAME,
                                                      count_include_pad=False),
                           S.AvgPool(name="q", kernel=(2, 3), stride=(1, 2), padding=S.SAME, count_include_pad=False),
                           input_shape=(4, 10, 9)),
    "GlobalAvgPool-keepdims": _model("gap_keep", S.GlobalAvgPool(name="g", keepdims=True),
                                     _conv("c", kernel=(1, 1))),
    # One conv applied in both branches of a concat (the second by reference), and a
    # dense layer applied twice in a row after a flatten.
    "Shared": _model("shared", S.Parallel(name="twin", branches=(
        _conv("conv", padding=(1, 1, 1, 1)),
        S.Sequential(name="other", children=(S.Activation(name="act", kind="tanh"),
                                             S.Shared(name="again", target="twin.conv"))))),
        S.Flatten(name="f"), S.Dense(name="fc", out_features=72),
        S.Parallel(name="heads", merge="add", branches=(S.Identity(name="skip"),
                                                       S.Dense(name="fc2", out_features=72))),
        S.Shared(name="fc2_again", target="heads.fc2")),
}


def test_the_cases_cover_the_whole_vocabulary():
    covered = {key.split("-")[0] for key in CASES}
    assert covered >= {t.__name__ for t in rules.NODE_TYPES}


def backend_param(name):
    return pytest.param(name, marks=pytest.mark.skipif(name not in AVAILABLE, reason=f"{name} is not installed"))


@pytest.mark.parametrize("name", [backend_param(n) for n in backends.BACKENDS])
def test_every_backend_has_a_converter_for_every_node_type(name):
    missing = backends.get(name).missing_converters()
    assert not missing, f"the {name} backend has no converter for {', '.join(missing)}"


def test_an_unknown_node_type_is_named_by_the_backend():
    """A node type outside a backend's registry fails at build time with the backend's name."""
    registry = backends.Converters("demo")
    registry.register(S.Conv2d)(lambda node: "conv")
    with pytest.raises(backends.UnsupportedNodeError, match="demo backend has no converter for Dense"):
        registry.convert(S.Dense(out_features=2))
    assert registry.missing() == [t.__name__ for t in rules.NODE_TYPES if t is not S.Conv2d]


@pytest.mark.parametrize("name", [backend_param(n) for n in backends.BACKENDS])
def test_capabilities_match_the_catalog(name):
    backend = backends.get(name)
    record = catalog.BACKENDS[name]
    assert backend.name == name
    assert set(backend.capabilities) == set(record.capabilities) - {"read"}
    for capability, method in (("gradients", "gradients"), ("training", "Trainer")):
        implemented = getattr(type(backend), method) is not getattr(backends.Backend, method)
        assert implemented == (capability in backend.capabilities), (name, capability)


def test_a_missing_capability_is_a_clear_error():
    class Partial(backends.Backend):
        name = "partial"
        converters = backends.Converters("partial")
        build = get_weights = set_weights = forward = count_params = versions = lambda *a, **k: None

    with pytest.raises(backends.CapabilityError, match="partial backend does not compute gradients"):
        Partial().gradients(None, None, None)
    with pytest.raises(backends.CapabilityError, match="partial backend does not train"):
        Partial().Trainer(None, "sgd", 0.1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_backend_round_trips_and_agrees_on_every_node_type(case, dtype):
    if len(AVAILABLE) < 2:
        pytest.skip("needs two backends")
    model = CASES[case]
    weights = W.init(model, seed=2, dtype=dtype)
    x = seeded_input(model.input_shape, dtype=dtype)
    outputs = {}
    for name in AVAILABLE:
        impl = backends.get(name)
        net = impl.build(model, dtype=dtype)
        impl.set_weights(net, weights)
        back = impl.get_weights(net)
        assert sorted(back) == sorted(weights), name
        assert all(np.array_equal(back[k], weights[k]) and back[k].dtype == np.dtype(dtype) for k in weights), name
        outputs[name], _ = impl.forward(net, x)
    reference = AVAILABLE[0]
    errors = {name: relative_error(out, outputs[reference]) for name, out in outputs.items()}
    assert all(outputs[n].shape == outputs[reference].shape for n in outputs), {n: o.shape for n, o in outputs.items()}
    assert max(errors.values()) <= TOLERANCE[dtype], errors


# ------------------------------------------------ gradients and training steps

# The cases of the vocabulary added for traced models; their gradients and training
# steps must agree too (a shared layer's gradient is the sum over its uses, under
# one canonical name).
GRADIENT_CASES = ("Activation-softmax", "Conv2d-same", "MaxPool-same", "AvgPool-same", "GlobalAvgPool-keepdims",
                  "Shared")
TRAINING_BACKENDS = [n for n in AVAILABLE if "gradients" in backends.get(n).capabilities]


def _classifier(model: S.ModelSpec) -> S.ModelSpec:
    """The case with a dense head of 3 logits (a loss needs them); paths unchanged."""
    head = (S.Flatten(name="head_flat"), S.Dense(name="head", out_features=3))
    return S.ModelSpec(name=model.name, root=S.Sequential(children=model.root.children + head),
                       input_shape=model.input_shape)


def _built(name, model, weights):
    impl = backends.get(name)
    net = impl.build(model, dtype="float64")
    impl.set_weights(net, weights)
    return impl, net


def _gradient_errors(ours, ref) -> dict:
    """Relative errors of loss, logits, input gradient and each parameter's gradient."""
    assert sorted(ours.params) == sorted(ref.params)
    errors = {"loss": abs(ours.loss - ref.loss) / max(1.0, abs(ref.loss)),
              "logits": relative_error(ours.logits, ref.logits), "input": relative_error(ours.input, ref.input)}
    errors.update({k: relative_error(ours.params[k], g) for k, g in ref.params.items()})
    return errors


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradients_agree_on_the_new_vocabulary(case):
    if len(TRAINING_BACKENDS) < 2:
        pytest.skip("needs two backends with gradients")
    model = _classifier(CASES[case])
    weights = W.init(model, seed=3, dtype="float64")
    x, labels = seeded_input(model.input_shape, batch=3, dtype="float64"), np.array([0, 2, 1])
    grads = {name: impl.gradients(net, x, labels) for name in TRAINING_BACKENDS
             for impl, net in [_built(name, model, weights)]}
    reference = grads[TRAINING_BACKENDS[0]]
    expected = sorted(k for k in weights)  # no BatchNorm here: every weight is trainable, each named once
    for name, got in grads.items():
        assert sorted(got.params) == expected, name
        errors = _gradient_errors(got, reference)
        assert max(errors.values()) <= TOLERANCE["float64"], (name, errors)


def test_a_shared_layer_gets_the_sum_of_both_uses_gradients():
    """The gradient of the shared conv is the sum of what each use alone would get:
    the same model with the second use as an unshared copy of the conv."""
    model = _classifier(CASES["Shared"])
    unshared = S.replace(model.root, "twin.other.again", lambda n: _conv("again", padding=(1, 1, 1, 1)))
    unshared = S.replace(unshared, "fc2_again", lambda n: S.Dense(name="fc2_again", out_features=72))
    copy = S.ModelSpec(name="unshared", root=unshared, input_shape=model.input_shape)
    weights = W.init(model, seed=3, dtype="float64")
    copied = {**weights, **{k.replace("twin.conv", "twin.other.again"): v for k, v in weights.items()
                            if k.startswith("twin.conv")},
              **{k.replace("heads.fc2", "fc2_again"): v for k, v in weights.items() if k.startswith("heads.fc2")}}
    x, labels = seeded_input(model.input_shape, batch=3, dtype="float64"), np.array([0, 2, 1])
    for name in TRAINING_BACKENDS:
        shared = _built(name, model, weights)
        separate = _built(name, copy, copied)
        g, s = shared[0].gradients(shared[1], x, labels), separate[0].gradients(separate[1], x, labels)
        assert abs(g.loss - s.loss) <= 1e-12
        for own, again in (("twin.conv", "twin.other.again"), ("heads.fc2", "fc2_again")):
            for role in ("weight", "bias"):
                total = s.params[f"{own}.{role}"] + s.params[f"{again}.{role}"]
                assert relative_error(g.params[f"{own}.{role}"], total) <= 1e-12, (name, own, role)
                assert relative_error(s.params[f"{again}.{role}"], s.params[f"{own}.{role}"]) > 1e-3


def test_training_steps_agree_on_a_shared_layer():
    if len(TRAINING_BACKENDS) < 2:
        pytest.skip("needs two backends that train")
    model = _classifier(CASES["Shared"])
    weights = W.init(model, seed=3, dtype="float64")
    rng = np.random.default_rng(7)
    batches = [(rng.standard_normal((3,) + model.input_shape), rng.integers(0, 3, 3)) for _ in range(2)]
    after = {}
    for name in TRAINING_BACKENDS:
        impl, net = _built(name, model, weights)
        trainer = impl.Trainer(net, "momentum", 2.0 ** -7, 0.5)  # exact in float32, where MXNet holds them
        losses = [trainer.step(x, labels) for x, labels in batches]
        after[name] = (losses, impl.get_weights(net))
    ref_losses, ref_weights = after[TRAINING_BACKENDS[0]]
    assert ref_losses[0] != ref_losses[1]
    for name, (losses, got) in after.items():
        assert sorted(got) == sorted(weights), name
        assert np.allclose(losses, ref_losses, rtol=1e-10, atol=0), (name, losses, ref_losses)
        assert max(relative_error(got[k], ref_weights[k]) for k in weights) <= TOLERANCE["float64"], name
        assert any(not np.array_equal(got[k], weights[k]) for k in weights)  # the steps changed the weights


# ------------------------------------------------- 'same' is TensorFlow's own rule


@pytest.mark.skipif("keras" not in AVAILABLE, reason="keras is not installed")
@pytest.mark.parametrize("hw", [(10, 9), (7, 12)])
def test_same_padding_is_tensorflows_own(hw):
    """The numpy reference's SAME conv and pools against Keras layers with their
    native padding="same" (TensorFlow computes the padding itself)."""
    import keras

    convs = [dict(kernel=(3, 3), stride=(2, 2), dilation=(1, 1)), dict(kernel=(3, 2), stride=(1, 1), dilation=(2, 3)),
             dict(kernel=(4, 5), stride=(3, 2), dilation=(1, 1))]
    pools = [dict(kernel=(3, 3), stride=(2, 2)), dict(kernel=(2, 3), stride=(1, 2)), dict(kernel=(4, 2), stride=(3, 3))]
    x = seeded_input((3,) + tuple(hw), dtype="float64")
    nhwc = np.transpose(x, (0, 2, 3, 1))
    for c in convs:
        node = S.Conv2d(name="c", out_channels=2, padding=S.SAME, **c)
        model = _model("same", node, input_shape=(3,) + tuple(hw))
        weights = W.init(model, seed=4, dtype="float64")
        layer = keras.layers.Conv2D(2, c["kernel"], strides=c["stride"], dilation_rate=c["dilation"],
                                    padding="same", dtype="float64")
        ours = _numpy_forward(model, weights, x)
        layer.build(nhwc.shape)
        layer.set_weights([np.transpose(weights["c.weight"], (2, 3, 1, 0)), weights["c.bias"]])
        theirs = np.transpose(np.asarray(layer(nhwc)), (0, 3, 1, 2))
        assert ours.shape == theirs.shape and relative_error(ours, theirs) <= 1e-12, c
    for p in pools:
        for spec_type, keras_type in ((S.MaxPool, keras.layers.MaxPooling2D),
                                      (S.AvgPool, keras.layers.AveragePooling2D)):
            extra = {"count_include_pad": False} if spec_type is S.AvgPool else {}
            model = _model("same", spec_type(name="p", padding=S.SAME, **p, **extra), input_shape=(3,) + tuple(hw))
            ours = _numpy_forward(model, {}, x)
            theirs = keras_type(p["kernel"], p["stride"], padding="same", dtype="float64")(nhwc)
            theirs = np.transpose(np.asarray(theirs), (0, 3, 1, 2))
            assert ours.shape == theirs.shape and relative_error(ours, theirs) <= 1e-12, (spec_type, p)


def _numpy_forward(model, weights, x):
    impl = backends.get("numpy")
    net = impl.build(model, dtype="float64")
    impl.set_weights(net, weights)
    return impl.forward(net, x)[0]
