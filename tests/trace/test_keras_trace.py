"""The Keras tracer (refnets/backends/keras/trace.py) on small models written as
Keras tutorials write them: the traced graph's ops, owners and canonical weights
against the layers' own variables, and end to end the traced spec run in every
backend against the native model's own output."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
keras = pytest.importorskip("keras")
from keras import layers  # noqa: E402

from refnets import backends  # noqa: E402
from refnets.trace import UntraceableError, trace  # noqa: E402

from conftest import TOLERANCE, relative_error, seeded_input  # noqa: E402
from keras_tutorial_models import (ConvBlock, Gate, any_size_model, bottleneck_model, nested_cnn,  # noqa: E402
                                   residual_blocks_model, shared_conv_model, subclassed_model, tutorial_cnn,
                                   two_tower_model)

keras_trace = pytest.importorskip("refnets.backends.keras.trace")

END_TO_END = backends.installed() + ["numpy"]


def randomize(model, seed=0):
    """Random values in every variable (BatchNorm variances positive), so that no
    check passes by the initialisers' zeros and ones; kernels scaled by their fan-in
    so that a final softmax is not saturated."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        scale = 1 / np.sqrt(np.prod(shape[:-1])) if len(shape) > 1 else 0.3
        value = rng.standard_normal(shape) * scale
        if "variance" in variable.path:
            value = np.abs(value) + 0.5
        variable.assign(value.astype(variable.dtype))
    return model


def ops_by_id(graph):
    return {op.id: op for op in graph.ops}


def kinds(graph):
    return [op.merge or type(op.node).__name__ for op in graph.ops]


def kernel_oihw(layer):
    return np.transpose(layer.kernel.numpy(), (3, 2, 0, 1))


# ---------------------------------------------------------------- graph level


def test_functional_bottleneck_block():
    model = randomize(bottleneck_model())
    graph = keras_trace.graph(model, (3, 32, 32))
    ops = ops_by_id(graph)
    assert graph.framework == "keras" and graph.input_shape == (3, 32, 32)
    stem = ops["stem_conv"].node
    assert (stem.kernel, stem.stride, stem.padding, stem.bias) == ((7, 7), (2, 2), "same", True)
    assert ops["conv2"].node.padding == "same" and ops["conv1"].node.padding == (0, 0, 0, 0)
    bn = ops["bn1"]
    assert (bn.node.eps, bn.node.affine, bn.node.unbiased_running_var) == (1e-3, True, False)
    assert bn.node.momentum == pytest.approx(0.01)
    layer = model.get_layer("bn1")
    for role, variable in (("weight", layer.gamma), ("bias", layer.beta), ("running_mean", layer.moving_mean),
                           ("running_var", layer.moving_variance)):
        assert np.array_equal(bn.weights[role], variable.numpy())
    for name in ("stem_conv", "conv1", "conv2", "conv3", "shortcut_conv"):
        assert np.array_equal(ops[name].weights["weight"], kernel_oihw(model.get_layer(name)))
    assert ops["conv2"].weights["weight"].shape == (16, 16, 3, 3)
    assert ops["add"].merge == "add" and set(ops["add"].inputs) == {"bn3", "shortcut_bn"}
    assert ops["out"].inputs == ("add",) and graph.output == "out"
    assert ops["stem_conv"].inputs == ("<input>",)


def test_subclassed_blocks_are_traced_through_their_call():
    model = randomize(residual_blocks_model())
    before = [len(layer._inbound_nodes) for layer in model._flatten_layers()]
    x = seeded_input((3, 16, 16)).transpose(0, 2, 3, 1)
    reference = model(x, training=False).numpy()
    graph = keras_trace.graph(model, (3, 16, 16))
    ops = ops_by_id(graph)
    assert [op.id for op in graph.ops[:3]] == ["stem/conv", "stem/bn", "stem/relu"]
    assert "block/conv_a/conv" in ops and "block/conv_b/bn" in ops
    (add,) = [op for op in graph.ops if op.merge]
    assert add.merge == "add" and set(add.inputs) == {"block/conv_b/bn", "stem/relu"}
    assert graph.output == graph.ops[-1].id and type(graph.ops[-1].node).__name__ == "Dense"
    block = model.get_layer("block")
    assert np.array_equal(ops["block/conv_a/conv"].weights["weight"], kernel_oihw(block.conv_a.conv))
    assert np.array_equal(ops["block/conv_b/bn"].weights["running_var"], block.conv_b.bn.moving_variance.numpy())
    # tracing leaves the user's model as it was
    assert [len(layer._inbound_nodes) for layer in model._flatten_layers()] == before
    assert np.array_equal(model(x, training=False).numpy(), reference)


def test_sequential_tutorial_cnn_with_fused_activations_and_a_flatten():
    model = randomize(tutorial_cnn())
    graph = keras_trace.graph(model, (1, 28, 28))
    assert kinds(graph) == ["Conv2d", "Activation", "MaxPool", "Conv2d", "Activation", "MaxPool", "Flatten",
                            "Dense", "Activation", "Dense", "Activation"]
    ops = ops_by_id(graph)
    conv, hidden, last = (model.layers[i] for i in (0, 5, 6))
    assert ops[f"{conv.name}.activation"].node.kind == "relu"
    assert ops[f"{last.name}.activation"].node.kind == "softmax"
    # the Dense after the Flatten of a (5, 5, 32) channels-last map: columns in C, H, W order
    kernel = hidden.kernel.numpy()
    expected = kernel.reshape(5, 5, 32, 64).transpose(3, 2, 0, 1).reshape(64, 800)
    assert np.array_equal(ops[hidden.name].weights["weight"], expected)
    assert not np.array_equal(expected, kernel.T)
    assert np.array_equal(ops[last.name].weights["weight"], last.kernel.numpy().T)


def test_the_flatten_permutation_reproduces_the_native_dense():
    """Canonical flatten (C, H, W) times the traced weight = Keras's own Dense output."""
    model = randomize(tutorial_cnn())
    graph = keras_trace.graph(model, (1, 28, 28))
    flatten, hidden = model.layers[4], model.layers[5]
    probe = keras.Model(model.inputs[0], [model.layers[3].output, hidden.output])
    x = seeded_input((28, 28, 1))
    feature_map, native = (t.numpy() for t in probe(x))
    canonical = feature_map.transpose(0, 3, 1, 2).reshape(len(x), -1)
    dense = ops_by_id(graph)[hidden.name]
    ours = np.maximum(canonical @ dense.weights["weight"].T + dense.weights["bias"], 0)
    assert flatten.name in ops_by_id(graph)
    assert relative_error(ours, native) <= TOLERANCE["float32"]


def test_features_flattened_channels_last_keep_their_order_through_batchnorm_and_concat():
    model = randomize(two_tower_model())
    ops = ops_by_id(keras_trace.graph(model, (3, 6, 5)))
    bn = model.get_layer("bn_a").gamma.numpy()  # over the (4, 3, 4) map flattened as H, W, C
    assert np.array_equal(ops["bn_a"].weights["weight"], bn.reshape(4, 3, 4).transpose(2, 0, 1).reshape(-1))
    kernel = model.get_layer("classifier").kernel.numpy()  # rows: 48 of tower a, then 18 of tower b (3, 2, 3)
    expected = np.concatenate([kernel[:48].reshape(4, 3, 4, 7).transpose(3, 2, 0, 1).reshape(7, 48),
                               kernel[48:].reshape(3, 2, 3, 7).transpose(3, 2, 0, 1).reshape(7, 18)], axis=1)
    assert np.array_equal(ops["classifier"].weights["weight"], expected)


def test_one_conv_called_on_two_branches_shares_its_owner():
    model = randomize(shared_conv_model())
    graph = keras_trace.graph(model, (3, 12, 12))
    convs = [op for op in graph.ops if type(op.node).__name__ == "Conv2d"]
    assert [op.owner for op in convs] == ["shared_conv", "shared_conv", "mix"]
    convs = convs[:2]
    assert convs[0].id != convs[1].id
    for op in convs:
        assert np.array_equal(op.weights["weight"], kernel_oihw(model.get_layer("shared_conv")))
    (concat,) = [op for op in graph.ops if op.merge]
    assert concat.merge == "concat"
    left, right = concat.inputs  # in the order of the Concatenate call: the pooled branch first
    assert ops_by_id(graph)[left].owner == "shared_conv" and ops_by_id(graph)[left].inputs == ("pool",)


def test_nested_functional_model_ids_and_depthwise_weights():
    model = randomize(nested_cnn())
    graph = keras_trace.graph(model, (3, 20, 20))
    ops = ops_by_id(graph)
    assert "features/conv" in ops and "features/depthwise" in ops and "logits" in ops
    depthwise = model.get_layer("features").get_layer("depthwise")
    kernel = depthwise.kernel.numpy()  # (3, 3, 8, 2)
    node = ops["features/depthwise"].node
    assert (node.out_channels, node.groups) == (16, 8)
    weight = ops["features/depthwise"].weights["weight"]
    assert weight.shape == (16, 1, 3, 3)
    assert np.array_equal(weight[2 * 5 + 1, 0], kernel[:, :, 5, 1])


def test_a_subclassed_model_and_its_list_of_blocks():
    model = randomize(subclassed_model())
    assert len(model.weights) == 2 + 2 * 5 + 2
    graph = keras_trace.graph(model, (3, 16, 16))
    ops = ops_by_id(graph)
    assert [op.id for op in graph.ops[:3]] == ["stem", "stem.activation", "blocks_0/conv"]
    assert "blocks_1/bn" in ops and ops["squeeze"].node.keepdims is True
    assert np.array_equal(ops["blocks_1/bn"].weights["weight"], model.blocks[1].bn.gamma.numpy())
    assert graph.output == "flatten"


def test_a_model_for_any_size_is_traced_at_the_given_size():
    graph = keras_trace.graph(any_size_model(), (3, 13, 11))
    assert kinds(graph) == ["Conv2d", "Activation", "MaxPool", "GlobalAvgPool", "Dense"]
    assert graph.ops[2].node.padding == "same" and graph.input_shape == (3, 13, 11)


def test_a_sequential_without_an_input_is_built_at_the_traced_size():
    model = keras.Sequential([layers.Conv2D(8, 3, activation="relu"), layers.Flatten(), layers.Dense(3)])
    graph = keras_trace.graph(model, (2, 6, 5))
    assert model.built and ops_by_id(graph)[model.layers[2].name].weights["weight"].shape == (3, 8 * 4 * 3)


def test_a_block_object_called_twice_shares_its_layers_and_activation_functions_trace():
    inputs = keras.Input(shape=(6, 6, 8))
    block = ConvBlock(8, name="twice")
    x = Gate(name="gate")(block(block(inputs)))
    graph = keras_trace.graph(keras.Model(inputs, x), (8, 6, 6))
    ids = [op.id for op in graph.ops]  # keras.ops operations are named by Keras's counters: re_lu, re_lu_1 ...
    assert ids[:6] == ["twice/conv", "twice/bn", "twice/relu", "twice_1/conv", "twice_1/bn", "twice_1/relu"]
    assert ids[6].startswith("gate/re_lu") and ids[7] == "gate/conv" and ids[8].startswith("gate/sigmoid")
    assert [op.owner for op in graph.ops if op.weights] == ["twice/conv", "twice/bn"] * 2 + ["gate/conv"]
    assert [op.node.kind for op in graph.ops if op.id.startswith("gate/") and not op.weights] == ["relu", "sigmoid"]


def test_an_untraceable_layer_is_named():
    inputs = keras.Input(shape=(8, 8, 3))
    x = layers.Conv2D(4, 3)(inputs)
    x = layers.LeakyReLU(negative_slope=0.1, name="leaky")(x)
    model = keras.Model(inputs, x)
    with pytest.raises(UntraceableError, match=r"LeakyReLU.*'leaky'"):
        keras_trace.graph(model, (3, 8, 8))


@pytest.mark.parametrize("make, message", [
    (lambda: layers.BatchNormalization(center=False, name="half"), r"center=False, scale=True"),
    (lambda: layers.Dense(3, name="dense4d"), r"'Dense'.*'dense4d'.*\(8, 8, 4\)"),
    (lambda: layers.UpSampling2D(name="up"), r"UpSampling2D.*'up'"),
])
def test_layers_outside_the_vocabulary_are_refused(make, message):
    inputs = keras.Input(shape=(8, 8, 3))
    model = keras.Model(inputs, make()(layers.Conv2D(4, 1)(inputs)))
    with pytest.raises(UntraceableError, match=message):
        keras_trace.graph(model, (3, 8, 8))


def test_weights_come_back_in_the_requested_dtype():
    graph = keras_trace.graph(randomize(tutorial_cnn()), (1, 28, 28), dtype="float64")
    assert {str(a.dtype) for op in graph.ops for a in op.weights.values()} == {"float64"}


# ---------------------------------------------------------------- end to end


class floatx:
    """Keras layers created inside are `dtype` (float type and dtype policy)."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.previous = keras.config.floatx(), keras.config.dtype_policy()
        keras.config.set_floatx(self.dtype)
        keras.config.set_dtype_policy(self.dtype)

    def __exit__(self, *exc):
        keras.config.set_floatx(self.previous[0])
        keras.config.set_dtype_policy(self.previous[1])


MODELS = {"bottleneck": (bottleneck_model, (3, 32, 32)), "subclassed_blocks": (residual_blocks_model, (3, 16, 16)),
          "sequential_cnn": (tutorial_cnn, (1, 28, 28)), "shared_conv": (shared_conv_model, (3, 12, 12)),
          "nested_cnn": (nested_cnn, (3, 20, 20)), "subclassed_model": (subclassed_model, (3, 16, 16)),
          "any_size": (any_size_model, (3, 13, 11)), "two_tower": (two_tower_model, (3, 6, 5))}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", END_TO_END)
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_the_traced_spec_reproduces_the_native_model(model_name, backend, dtype):
    make, shape = MODELS[model_name]
    with floatx(dtype):
        model = randomize(make())
    x = seeded_input(shape, dtype=dtype)
    reference = np.asarray(model(x.transpose(0, 2, 3, 1), training=False))
    if reference.ndim == 4:
        reference = reference.transpose(0, 3, 1, 2)
    traced = trace(model, "keras", shape, dtype)
    impl = backends.get(backend)
    net = impl.build(traced.spec, dtype)
    impl.set_weights(net, traced.weights)
    out, _ = impl.forward(net, x)
    assert out.shape == reference.shape
    assert relative_error(out, reference) <= TOLERANCE[dtype]
