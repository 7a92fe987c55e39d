"""The PyTorch tracer (refnets/backends/torch/trace.py) on models written the way
tutorials write them: the traced graph (op kinds, owners, the model's own weights)
and, end to end, the traced spec built in every installed backend against the
native model's own output."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from conftest import INSTALLED, TOLERANCE, relative_error, seeded_input  # noqa: E402
from refnets import backends  # noqa: E402
from refnets import spec as S  # noqa: E402
from refnets.trace import UntraceableError  # noqa: E402


# ------------------------------------------------------------ tutorial-style models


class ThreeWays(nn.Module):
    """One conv module applied to three views of the input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(12, 6, 1)

    def forward(self, x):
        a = self.conv(x)
        b = self.conv(F.relu(x))
        c = self.conv(torch.sigmoid(x))
        return self.head(torch.cat([a, b, c], dim=1))


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 2)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class PoolInForward(nn.Module):
    """Network-in-network style: the global pool is created in forward from the map's size."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        x = self.features(x)
        x = nn.AvgPool2d(x.shape[2])(x)
        x = self.classifier(x)
        return x.view(x.size(0), -1)


class Mixed(nn.Module):
    """Less common settings: 'same' padding with an even kernel, F.pad, a ceil-mode pool
    that does not count its padding, dropout, BatchNorm1d, softmax (or not)."""

    def __init__(self, softmax=True):
        super().__init__()
        self.softmax = softmax
        self.conv = nn.Conv2d(3, 8, 4, padding="same")
        self.bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.01)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(8 * 6 * 5, 12)
        self.bn1 = nn.BatchNorm1d(12)

    def forward(self, x):
        x = torch.tanh(self.bn(self.conv(x)))
        x = F.pad(x, (1, 0, 2, 1))
        x = F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        x = self.drop(torch.flatten(x, 1))
        x = self.bn1(self.fc(x))
        return F.softmax(x, dim=1) if self.softmax else x


class GeluBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return F.gelu(self.conv(x))


class WithGelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = GeluBlock()
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.block(x), 1))


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x) * 2


class FunctionalWeights(nn.Module):
    """Weights held as bare parameters and applied with F.conv2d; `second_bias`
    pairs the shared kernel with another bias the second time."""

    def __init__(self, second_bias=False):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(3, 3, 3, 3) * 0.2)
        self.bias = nn.Parameter(torch.randn(3) * 0.1)
        self.other_bias = nn.Parameter(torch.randn(3) * 0.1) if second_bias else None

    def forward(self, x):
        y = F.conv2d(x, self.kernel, self.bias, padding=1)
        second = self.bias if self.other_bias is None else self.other_bias
        return y + F.conv2d(F.relu(y), self.kernel, second, padding=1)


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        features = F.relu(self.conv(x))
        return self.fc(torch.flatten(features, 1)), features


# --------------------------------------------------------------------- helpers


def randomized(model, seed=0):
    """The model with every parameter and BatchNorm statistic drawn at random (seeded),
    so default statistics cannot hide a BatchNorm bug."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values * 1.5 + 0.5 if name.endswith("running_var") else (values - 0.5) * 0.4)
    return model.eval()


def traced_graph(model, shape, dtype="float32"):
    from refnets.backends.torch import trace
    return trace.graph(model, shape, dtype=dtype)


def kinds(graph):
    return [type(op.node).__name__ if op.node is not None else op.merge for op in graph.ops]


def assert_weights_are_the_models(graph, model, dtype="float32"):
    state = model.state_dict()
    checked = 0
    for op in graph.ops:
        for role, array in op.weights.items():
            assert array.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(array, state[f"{op.owner}.{role}"].numpy().astype(dtype))
            checked += 1
    assert checked > 0


def end_to_end(model, shape, dtype):
    """{backend: relative error} of the traced spec built in every installed backend
    (and the numpy reference) against the native model's own output."""
    from refnets.trace import trace

    native = copy.deepcopy(model).to(getattr(torch, dtype)).eval()
    x = seeded_input(shape, batch=2, dtype=dtype)
    with torch.no_grad():
        ref = native(torch.from_numpy(x)).numpy()
    traced = trace(model, "torch", shape, dtype=dtype)
    errors = {}
    for name in INSTALLED + ["numpy"]:
        backend = backends.get(name)
        net = backend.build(traced.spec, dtype)
        backend.set_weights(net, traced.weights)
        out, _ = backend.forward(net, x)
        errors[name] = relative_error(np.asarray(out), ref)
    return errors


# ----------------------------------------------------------------------- graphs


def test_one_conv_module_used_three_times_gives_three_ops_with_one_owner():
    model = randomized(ThreeWays())
    graph = traced_graph(model, (4, 8, 8))
    convs = [op for op in graph.ops if isinstance(op.node, S.Conv2d) and op.owner == "conv"]
    assert [op.id for op in convs] == ["conv", "conv_1", "conv_2"]
    assert kinds(graph) == ["Conv2d", "Activation", "Conv2d", "Activation", "Conv2d", "concat", "Conv2d"]
    cat = graph.ops[5]
    assert cat.inputs == ("conv", "conv_1", "conv_2")  # concat order is the code's order
    assert [op.node.kind for op in graph.ops if isinstance(op.node, S.Activation)] == ["relu", "sigmoid"]
    assert graph.output == "head" and graph.framework == "torch" and graph.input_shape == (4, 8, 8)
    assert_weights_are_the_models(graph, model)


def test_resnet18_graph():
    model = randomized(ResNet18())
    graph = traced_graph(model, (3, 64, 64))
    found = kinds(graph)
    assert found.count("Conv2d") == 20 and found.count("BatchNorm") == 20 and found.count("add") == 8
    stem = graph.ops[0]
    assert stem.id == "conv1" and stem.node.bias and stem.node.padding == (3, 3, 3, 3) and stem.node.stride == (2, 2)
    assert sorted(stem.weights) == ["bias", "weight"]
    first_block_adds = [op for op in graph.ops if op.id == "layer1.0.add"]
    assert first_block_adds and first_block_adds[0].inputs == ("layer1.0.bn2", "maxpool")
    down = next(op for op in graph.ops if op.id == "layer2.0.add")
    assert down.inputs == ("layer2.0.bn2", "layer2.0.downsample.1")
    # the module reused twice in a block: two ops, unique ids
    assert {"layer1.0.relu", "layer1.0.relu_1"} <= {op.id for op in graph.ops}
    # AdaptiveAvgPool2d((1, 1)) then torch.flatten: one global pool, then the dense layer
    assert found[-2:] == ["GlobalAvgPool", "Dense"] and not graph.ops[-2].node.keepdims
    assert "Flatten" not in found
    bns = [op for op in graph.ops if isinstance(op.node, S.BatchNorm)]
    assert all(op.node.affine and op.node.unbiased_running_var and op.node.momentum == 0.1 for op in bns)
    assert_weights_are_the_models(graph, model)


def test_lenet_graph_from_functional_ops():
    model = randomized(LeNet())
    graph = traced_graph(model, (1, 28, 28), dtype="float64")
    assert kinds(graph) == ["Conv2d", "Activation", "MaxPool", "Conv2d", "Activation", "MaxPool", "Flatten", "Dense",
                            "Activation", "Dense", "Activation", "Dense"]
    assert [op.id for op in graph.ops][:3] == ["conv1", "relu", "max_pool2d"]
    pool = graph.ops[2].node
    assert pool.kernel == (2, 2) and pool.stride == (2, 2) and not pool.ceil_mode
    assert_weights_are_the_models(graph, model, dtype="float64")


@pytest.mark.parametrize("size", [16, 12])
def test_a_pool_created_in_forward_over_the_whole_map_is_global(size):
    graph = traced_graph(randomized(PoolInForward()), (3, size, size))
    assert kinds(graph) == ["Conv2d", "Activation", "MaxPool", "Conv2d", "Activation", "GlobalAvgPool", "Conv2d",
                            "Flatten"]
    assert graph.ops[5].node.keepdims  # it feeds a 1x1 conv: the map stays (C, 1, 1)
    assert [op.id for op in graph.ops][:3] == ["features.0", "features.1", "features.2"]


def test_less_common_settings():
    graph = traced_graph(randomized(Mixed()), (3, 8, 8))
    conv, bn, act, pad, pool, flat, drop, fc, bn1, soft = [op.node for op in graph.ops]
    assert conv.padding == (1, 2, 1, 2)  # torch's 'same': the odd cell at the bottom / right
    assert bn.eps == 1e-3 and bn.momentum == 0.01 and act.kind == "tanh"
    assert pad.padding == (2, 1, 1, 0)
    assert pool.ceil_mode and not pool.count_include_pad and pool.padding == (1, 1, 1, 1)
    assert isinstance(flat, S.Flatten) and drop.rate == 0.25 and isinstance(bn1, S.BatchNorm)
    assert soft.kind == "softmax"


# --------------------------------------------------------------------- refusals


@pytest.mark.parametrize("model, op, layer", [(WithGelu(), "aten.gelu", "block"),
                                              (nn.Sequential(nn.Conv2d(3, 8, 3), nn.LeakyReLU(0.1)), "aten.leaky_relu", "1"),
                                              (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6()), "aten.hardtanh", "1"),
                                              (Scaled(), "aten.mul", "Scaled")])
def test_an_op_outside_the_vocabulary_is_named_with_its_layer(model, op, layer):
    with pytest.raises(UntraceableError) as caught:
        traced_graph(model, (3, 8, 8))
    message = str(caught.value)
    assert op in message and f"layer {layer!r}" in message


def test_functional_weights_reused_share_an_owner_and_other_biases_are_refused():
    model = FunctionalWeights()
    graph = traced_graph(model, (3, 8, 8))
    assert [(op.id, op.owner) for op in graph.ops if op.weights] == [("kernel", "kernel"), ("kernel_1", "kernel")]
    np.testing.assert_array_equal(graph.ops[0].weights["weight"], model.kernel.detach().numpy())
    np.testing.assert_array_equal(graph.ops[0].weights["bias"], model.bias.detach().numpy())
    assert kinds(graph) == ["Conv2d", "Activation", "Conv2d", "add"]
    with pytest.raises(UntraceableError, match="other_bias"):
        traced_graph(FunctionalWeights(second_bias=True), (3, 8, 8))


def test_a_model_with_two_outputs_is_refused():
    with pytest.raises(UntraceableError, match="2 outputs"):
        traced_graph(TwoHeads(), (3, 8, 8))


class DictOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return {"logits": self.conv(x)}


def test_a_model_returning_a_dict_is_refused():
    with pytest.raises(UntraceableError, match="returns a dict"):
        traced_graph(DictOutput(), (3, 8, 8))


def test_the_model_keeps_its_training_mode():
    model = LeNet().train()
    traced_graph(model, (1, 28, 28))
    assert model.training


# ------------------------------------------------------------------ end to end


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("build, shape", [(LeNet, (1, 28, 28)), (ResNet18, (3, 64, 64)), (ThreeWays, (4, 8, 8)),
                                          (PoolInForward, (3, 12, 12)),
                                          (lambda: Mixed(softmax=False), (3, 8, 8)), (Mixed, (3, 8, 8))],
                         ids=["lenet", "resnet18", "shared-conv", "pool-in-forward", "mixed", "mixed-softmax"])
def test_the_traced_spec_agrees_with_the_native_model_in_every_backend(build, shape, dtype):
    errors = end_to_end(randomized(build()), shape, dtype)
    assert set(errors) == set(INSTALLED) | {"numpy"}
    assert max(errors.values()) <= TOLERANCE[dtype], errors
