"""The MXNet Gluon tracer (refnets/backends/mxnet/trace.py) on models written the way
Gluon tutorials write them: the traced graph (op kinds, owners, the block's own
parameters as canonical weights) and, end to end, the traced spec built in every
installed backend (and the numpy reference) against the native block's output."""

import re

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
from mxnet import nd  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

from conftest import INSTALLED, TOLERANCE, relative_error, seeded_input  # noqa: E402
from refnets import backends  # noqa: E402
from refnets import spec as S  # noqa: E402
from refnets.trace import UntraceableError, trace  # noqa: E402


# ------------------------------------------------------------ tutorial-style models


def lenet(hybrid):
    net = nn.HybridSequential() if hybrid else nn.Sequential()
    net.add(nn.Conv2D(channels=20, kernel_size=5, activation='relu'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Conv2D(channels=50, kernel_size=5, activation='relu'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Dense(500, activation='relu'),
            nn.Dense(10))
    return net


class Inception(nn.Block):
    def __init__(self, c1, c2, c3, c4, **kwargs):
        super(Inception, self).__init__(**kwargs)
        self.p1_1 = nn.Conv2D(c1, kernel_size=1, activation='relu')
        self.p2_1 = nn.Conv2D(c2[0], kernel_size=1, activation='relu')
        self.p2_2 = nn.Conv2D(c2[1], kernel_size=3, padding=1, activation='relu')
        self.p3_1 = nn.Conv2D(c3[0], kernel_size=1, activation='relu')
        self.p3_2 = nn.Conv2D(c3[1], kernel_size=5, padding=2, activation='relu')
        self.p4_1 = nn.MaxPool2D(pool_size=3, strides=1, padding=1)
        self.p4_2 = nn.Conv2D(c4, kernel_size=1, activation='relu')

    def forward(self, x):
        p1 = self.p1_1(x)
        p2 = self.p2_2(self.p2_1(x))
        p3 = self.p3_2(self.p3_1(x))
        p4 = self.p4_2(self.p4_1(x))
        return nd.concat(p1, p2, p3, p4, dim=1)


class Residual(nn.HybridBlock):
    def __init__(self, channels, strides=1, **kwargs):
        super(Residual, self).__init__(**kwargs)
        self.conv1 = nn.Conv2D(channels, kernel_size=3, padding=1, strides=strides, use_bias=False)
        self.bn1 = nn.BatchNorm()
        self.conv2 = nn.Conv2D(channels, kernel_size=3, padding=1, use_bias=False)
        self.bn2 = nn.BatchNorm()
        self.conv3 = nn.Conv2D(channels, kernel_size=1, strides=strides)

    def hybrid_forward(self, F, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.conv3(x))


def small_resnet():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, kernel_size=3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            Residual(16, strides=2), nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dense(10))
    return net


def pooling_net():
    """Ceil-mode ('full') pools whose last window overhangs the input (but never
    starts in the padding), an affine-free BatchNorm, dropout and a flatten."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, kernel_size=3), nn.BatchNorm(scale=False, center=False),
            nn.AvgPool2D(pool_size=3, strides=2, padding=1, ceil_mode=True),
            nn.AvgPool2D(pool_size=3, strides=2, padding=1, ceil_mode=True, count_include_pad=False),
            nn.MaxPool2D(pool_size=2, strides=2, ceil_mode=True), nn.Dropout(0.3),
            nn.Flatten(), nn.Dense(16, activation='tanh'), nn.Dense(4, activation='sigmoid'))
    return net


class TwoViews(nn.Block):
    """One conv applied to the input and to its relu."""

    def __init__(self, **kwargs):
        super(TwoViews, self).__init__(**kwargs)
        self.conv = nn.Conv2D(4, kernel_size=3, padding=1)
        self.out = nn.Conv2D(6, kernel_size=1)

    def forward(self, x):
        return self.out(nd.concat(self.conv(x), self.conv(nd.relu(x)), dim=1))


class Classifier(nn.HybridBlock):
    def __init__(self, **kwargs):
        super(Classifier, self).__init__(**kwargs)
        self.features = nn.HybridSequential()
        self.features.add(nn.Conv2D(8, kernel_size=3, strides=2), nn.Activation('relu'))
        self.output = nn.Dense(5)

    def hybrid_forward(self, F, x):
        return F.softmax(self.output(self.features(x)))


class PaddedHead(nn.Block):
    """A zero pad, a skip through BlockGrad, an elemwise_add and a reshape to (0, -1)."""

    def __init__(self, batch_dim=0, **kwargs):
        super(PaddedHead, self).__init__(**kwargs)
        self.batch_dim = batch_dim
        self.conv = nn.Conv2D(4, kernel_size=3)
        self.conv2 = nn.Conv2D(4, kernel_size=1)
        self.fc = nn.Dense(3, flatten=False)

    def forward(self, x):
        x = nd.pad(x, mode='constant', constant_value=0, pad_width=(0, 0, 0, 0, 1, 2, 0, 1))
        y = self.conv(x)
        y = nd.elemwise_add(nd.BlockGrad(y), self.conv2(y))
        return self.fc(y.reshape((self.batch_dim, -1)))


class Gated(nn.Block):
    def __init__(self, **kwargs):
        super(Gated, self).__init__(**kwargs)
        self.a = nn.Conv2D(4, kernel_size=3, padding=1)
        self.b = nn.Conv2D(4, kernel_size=3, padding=1)

    def forward(self, x):
        return self.a(x) * self.b(x)


def ready(net, shape, dtype="float32", seed=0):
    """Initialised, run once, BatchNorm statistics and affine parameters made non-trivial."""
    mx.random.seed(seed)
    net.initialize(mx.init.Xavier())
    net(nd.zeros((1,) + tuple(shape)))
    rng = np.random.default_rng(seed)
    for name, param in net.collect_params().items():
        if name.endswith(("running_var", "gamma")):
            param.set_data(nd.array(rng.uniform(0.5, 1.5, param.shape)))
        elif name.endswith("running_mean") or (name.endswith("beta") and param.grad_req != "null"):
            param.set_data(nd.array(rng.uniform(-0.5, 0.5, param.shape)))  # an untrained beta stays 0
    net.cast(dtype)
    return net


MODELS = {
    "lenet_sequential": (lambda: lenet(hybrid=False), (1, 28, 28)),
    "lenet_hybrid": (lambda: lenet(hybrid=True), (1, 28, 28)),
    "inception": (lambda: Inception(4, (3, 6), (2, 5), 3), (3, 12, 12)),
    "residual": (lambda: Residual(8, strides=2), (4, 10, 10)),
    "pooling": (pooling_net, (3, 16, 16)),
    "small_resnet": (small_resnet, (3, 12, 12)),
    "shared_conv": (TwoViews, (3, 8, 8)),
    "softmax_classifier": (Classifier, (3, 11, 11)),
    "padded_head": (PaddedHead, (2, 7, 7)),
}


# ----------------------------------------------------------------------- helpers


def traced_graph(model, shape, dtype="float32"):
    from refnets.backends.mxnet import trace as mxnet_trace
    return mxnet_trace.graph(model, shape, dtype=dtype)


def kinds(graph):
    return [type(op.node).__name__ if op.node is not None else op.merge for op in graph.ops]


def block_at(model, path):
    for segment in path.split(".") if path and path != model.name else ():
        model = model._children[segment]
    return model


def assert_weights_are_the_blocks(graph, model, dtype="float32"):
    checked = 0
    for op in graph.ops:
        block = block_at(model, op.owner)
        is_bn = isinstance(op.node, S.BatchNorm)
        for role, array in op.weights.items():
            attr = {"weight": "gamma", "bias": "beta"}.get(role, role) if is_bn else role
            assert array.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(array, getattr(block, attr).data().asnumpy().astype(dtype))
            checked += 1
    assert checked > 0


# ----------------------------------------------------------------------- graphs


@pytest.mark.parametrize("hybrid", [False, True], ids=["Sequential", "HybridSequential"])
def test_lenet_with_fused_relus(hybrid):
    model = ready(lenet(hybrid), (1, 28, 28))
    graph = traced_graph(model, (1, 28, 28))
    assert kinds(graph) == ["Conv2d", "Activation", "MaxPool", "Conv2d", "Activation", "MaxPool", "Flatten",
                            "Dense", "Activation", "Dense"]
    conv1, conv2, dense1, dense2 = (op for op in graph.ops if op.weights)
    assert (conv1.node.out_channels, conv2.node.out_channels) == (20, 50)
    assert conv1.node.kernel == (5, 5) and conv1.node.bias
    assert dense1.weights["weight"].shape == (500, 50 * 4 * 4) and dense2.node.out_features == 10
    assert [op.owner for op in (conv1, conv2, dense1, dense2)] == ["0", "2", "4", "5"]
    for op in graph.ops:  # Gluon's own names: "conv0_fwd", "conv0_relu_fwd", "dense0_fwd.flatten"
        assert re.fullmatch(r"\w+_fwd(\.flatten)?", op.id), op.id
    assert graph.ops[0].id == f"{model[0].name}_fwd" and graph.ops[1].id == f"{model[0].name}_relu_fwd"
    assert graph.output == graph.ops[-1].id and graph.framework == "mxnet"
    assert_weights_are_the_blocks(graph, model)


def test_a_plain_block_inception_is_four_branches_joined_by_a_concat_in_order():
    model = ready(Inception(4, (3, 6), (2, 5), 3), (3, 12, 12))
    model.p2_1.hybridize()  # a hybridized child is still read op by op, and stays hybridized
    graph = traced_graph(model, (3, 12, 12))
    assert model.p2_1._active
    concat = graph.ops[-1]
    assert concat.merge == "concat" and concat.id == f"{model.name}_concat0"
    by_id = {op.id: op for op in graph.ops}
    last_convs = [by_id[by_id[source].inputs[0]] for source in concat.inputs]  # each branch: conv, then relu
    assert [op.owner for op in last_convs] == ["p1_1", "p2_2", "p3_2", "p4_2"]
    assert [op.node.out_channels for op in last_convs] == [4, 6, 5, 3]
    assert isinstance(by_id[last_convs[3].inputs[0]].node, S.MaxPool)
    assert kinds(graph).count("Conv2d") == 6 and kinds(graph).count("Activation") == 6
    assert_weights_are_the_blocks(graph, model)


def test_a_residual_hybrid_block_adds_its_body_and_a_biased_shortcut_conv():
    model = ready(Residual(8, strides=2), (4, 10, 10))
    model.hybridize()
    graph = traced_graph(model, (4, 10, 10))
    assert kinds(graph) == ["Conv2d", "BatchNorm", "Activation", "Conv2d", "BatchNorm", "Conv2d", "add",
                            "Activation"]
    add = graph.ops[6]
    assert add.inputs == (graph.ops[4].id, graph.ops[5].id)
    shortcut = graph.ops[5]
    assert shortcut.inputs == ("<input>",) and shortcut.node.bias and shortcut.node.stride == (2, 2)
    assert not graph.ops[0].node.bias and graph.ops[0].node.padding == (1, 1, 1, 1)
    bn = graph.ops[1].node
    assert bn.affine and bn.eps == 1e-5 and bn.momentum == 0.1 and not bn.unbiased_running_var
    assert sorted(graph.ops[1].weights) == ["bias", "running_mean", "running_var", "weight"]
    assert_weights_are_the_blocks(graph, model)


def test_ceil_mode_pools_affine_free_batchnorm_dropout_and_a_flatten():
    model = ready(pooling_net(), (3, 16, 16))
    graph = traced_graph(model, (3, 16, 16), dtype="float64")
    assert kinds(graph) == ["Conv2d", "BatchNorm", "AvgPool", "AvgPool", "MaxPool", "Dropout", "Flatten", "Dense",
                            "Activation", "Dense", "Activation"]
    bn, avg, avg2, pool, drop = (op.node for op in graph.ops[1:6])
    assert not bn.affine and sorted(graph.ops[1].weights) == ["running_mean", "running_var"]
    assert avg.ceil_mode and avg.count_include_pad and avg.padding == (1, 1, 1, 1)
    assert avg2.ceil_mode and not avg2.count_include_pad
    assert pool.ceil_mode and pool.padding == (0, 0, 0, 0) and drop.rate == 0.3
    assert graph.ops[7].weights["weight"].shape == (16, 6 * 3 * 3)
    assert [op.node.kind for op in graph.ops if isinstance(op.node, S.Activation)] == ["tanh", "sigmoid"]
    assert_weights_are_the_blocks(graph, model, dtype="float64")


def test_a_block_applied_twice_gives_two_ops_of_one_owner():
    model = ready(TwoViews(), (3, 8, 8))
    graph = traced_graph(model, (3, 8, 8))
    convs = [op for op in graph.ops if op.owner == "conv"]
    assert len(convs) == 2 and convs[0].id != convs[1].id
    assert convs[0].inputs == ("<input>",) and graph.ops[graph.ops.index(convs[1]) - 1].node.kind == "relu"
    np.testing.assert_array_equal(convs[0].weights["weight"], convs[1].weights["weight"])


def test_softmax_and_a_global_pool_that_keeps_its_1x1_dims():
    graph = traced_graph(ready(small_resnet(), (3, 12, 12)), (3, 12, 12))
    assert kinds(graph)[-3:] == ["GlobalAvgPool", "Flatten", "Dense"] and graph.ops[-3].node.keepdims
    graph = traced_graph(ready(Classifier(), (3, 11, 11)), (3, 11, 11))
    assert kinds(graph) == ["Conv2d", "Activation", "Flatten", "Dense", "Activation"]
    assert graph.ops[-1].node.kind == "softmax"


def test_zero_pad_blockgrad_elemwise_add_and_a_reshape_that_flattens():
    graph = traced_graph(ready(PaddedHead(), (2, 7, 7)), (2, 7, 7))
    assert kinds(graph) == ["ZeroPad", "Conv2d", "Conv2d", "add", "Flatten", "Dense"]
    pad, conv, conv2, add = graph.ops[:4]
    assert pad.node.padding == (1, 2, 0, 1) and add.inputs == (conv.id, conv2.id)
    assert graph.ops[5].weights["weight"].shape == (3, 4 * 8 * 6)


# ----------------------------------------------------------------- refusals


def refusal(model, shape):
    with pytest.raises(UntraceableError) as caught:
        traced_graph(ready(model, shape), shape)
    return str(caught.value)


def test_leaky_relu_is_refused_naming_the_op_and_the_block():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, kernel_size=3), nn.LeakyReLU(0.1), nn.Dense(3))
    message = refusal(net, (3, 8, 8))
    assert "'LeakyReLU'" in message and net[1].name in message


def test_an_elementwise_product_in_a_plain_block_is_refused():
    model = Gated()
    message = refusal(model, (3, 8, 8))
    assert "'broadcast_mul'" in message and model.name in message


def test_mxnet_full_pooling_that_keeps_a_window_in_the_padding_is_refused():
    net = nn.HybridSequential()
    net.add(nn.MaxPool2D(pool_size=2, strides=2, padding=1, ceil_mode=True))
    message = refusal(net, (1, 5, 5))
    assert "'Pooling'" in message and "full" in message and "(1, 4, 4)" in message


@pytest.mark.parametrize("scale, center", [(False, True), (True, False)])
def test_a_batchnorm_with_half_its_affine_transform_is_refused(scale, center):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, kernel_size=3), nn.BatchNorm(scale=scale, center=center))
    message = refusal(net, (3, 8, 8))
    assert "'BatchNorm'" in message and f"scale={scale}, center={center}" in message


def test_a_reshape_that_hard_codes_the_batch_size_is_refused():
    assert "fails on a batch of" in refusal(PaddedHead(batch_dim=1), (2, 7, 7))


class Rows(nn.HybridBlock):
    def __init__(self, **kwargs):
        super(Rows, self).__init__(**kwargs)
        self.conv = nn.Conv2D(4, kernel_size=3)

    def hybrid_forward(self, F, x):
        return F.reshape(self.conv(x), shape=(0, -1, 6))


def test_a_reshape_that_is_not_a_flatten_is_refused():
    model = Rows()
    message = refusal(model, (3, 8, 8))
    assert "'Reshape'" in message and model.name in message


@pytest.mark.parametrize("layer, op, why", [
    (lambda: nn.BatchNorm(use_global_stats=True), "BatchNorm", "use_global_stats=True"),
    (lambda: nn.BatchNorm(axis=2), "BatchNorm", "axis=2"),
    (lambda: nn.GlobalMaxPool2D(), "Pooling", "global max pool"),
    (lambda: nn.Activation('softrelu'), "Activation", "act_type=softrelu"),
    (lambda: nn.Conv2DTranspose(2, kernel_size=3), "Deconvolution", ""),
], ids=["global_stats", "bn_axis", "global_max", "softrelu", "deconv"])
def test_layers_outside_the_vocabulary_are_refused(layer, op, why):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, kernel_size=3), layer())
    message = refusal(net, (3, 8, 8))
    assert f"op {op!r} in layer '1 ({net[1].name})'" in message and why in message


def test_a_dense_layer_on_a_feature_map_without_flatten_is_refused():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, kernel_size=3), nn.Dense(5, flatten=False))
    assert "'FullyConnected'" in refusal(net, (3, 8, 8))


# ----------------------------------------------------------------- end to end


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", INSTALLED + ["numpy"])
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_the_traced_spec_reproduces_the_native_block(model_name, backend, dtype):
    make, shape = MODELS[model_name]
    model = ready(make(), shape, dtype=dtype)
    x = seeded_input(shape, batch=2, dtype=dtype)
    reference = model(nd.array(x, dtype=dtype)).asnumpy()
    traced = trace(model, "mxnet", shape, dtype=dtype)
    impl = backends.get(backend)
    net = impl.build(traced.spec, dtype)
    impl.set_weights(net, traced.weights)
    out, _ = impl.forward(net, x)
    out = np.asarray(out)
    assert out.shape == reference.shape
    assert relative_error(out, reference) <= TOLERANCE[dtype]
