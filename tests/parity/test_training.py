"""Training parity: gradients (--grad), a training-mode step (--train) and
optimiser steps (--train-steps) agree on correct models and catch the faults
they should; every backend updates BatchNorm running statistics by the spec's rule."""

import dataclasses
import importlib
import json
import subprocess
import sys

import numpy as np
import pytest
import refnets
from parity import run_grad, run_train, run_train_steps
from parity.cli import main
from parity.reports import training as training_report
from parity.training import DEFAULT_LR, node_scales
from refnets import backends
from refnets import spec as S
from refnets import weights as W
from refnets.zoo.layers import conv, dense, relu, seq

from conftest import INSTALLED, backend_params

needs_three = pytest.mark.skipif(len(INSTALLED) < 3, reason="needs all three backends")


def tiny_bn_model(momentum=0.25, unbiased=True, name="tiny_bn") -> S.ModelSpec:
    """conv -> BatchNorm2d -> ReLU -> flatten -> dense -> BatchNorm1d -> ReLU -> dense:
    both kinds of BatchNorm, with a momentum that is no framework's default."""
    def norm(node_name):
        return S.BatchNorm(name=node_name, momentum=momentum, unbiased_running_var=unbiased)

    root = seq("", conv("conv", 4, 3, padding=1), norm("bn1"), relu("relu1"), S.Flatten(name="flatten"),
               dense("fc1", 6), norm("bn2"), relu("relu2"), dense("fc2", 3))
    return S.ModelSpec(name=name, root=root, input_shape=(2, 5, 5))


def _ordered(result):
    return [result.reference] + [b for b in result.backends if b != result.reference]


# ------------------------------------------------------------------- the spec alone


def test_without_dropout_replaces_every_dropout_by_an_identity():
    model_spec = refnets.get_spec("alexnet", input_shape=(3, 63, 63))
    plain, dropped = S.without_dropout(model_spec)
    assert dropped == ("classifier.drop1", "classifier.drop2")
    assert not any(isinstance(node, S.Dropout) for _, node in plain.walk())
    assert isinstance(S.find(plain.root, "classifier.drop1"), S.Identity)
    assert refnets.param_shapes(plain) == refnets.param_shapes(model_spec)


def test_node_scales_take_the_largest_gradient_of_each_node():
    grads = {"a.weight": np.array([[3.0, -4.0]]), "a.bias": np.array([1e-12]), "b.weight": np.array([-2.0])}
    assert node_scales(grads) == {"a": 4.0, "b": 2.0}


# ------------------------------------------------- each backend against the spec's rule


def _expected_statistics(model_spec, impl, net, weights, x):
    """The spec's update, computed in numpy from the BatchNorm inputs of a
    training-mode forward: running = (1 - m) * running + m * batch statistic,
    the variance's times n / (n - 1) when unbiased."""
    sources = S.input_sources(model_spec.root)
    norms = [(p, n) for p, n in model_spec.walk() if isinstance(n, S.BatchNorm)]
    _, acts = impl.forward(net, x, capture=[sources[p] for p, _ in norms], train=True)
    expected = {}
    for path, node in norms:
        values = acts[sources[path]].astype(np.float64)
        axes = (0, 2, 3) if values.ndim == 4 else (0,)
        count = values.size // values.shape[1]
        var = values.var(axis=axes) * (count / (count - 1) if node.unbiased_running_var else 1.0)
        m = node.momentum
        expected[f"{path}.running_mean"] = (1 - m) * weights[f"{path}.running_mean"] + m * values.mean(axis=axes)
        expected[f"{path}.running_var"] = (1 - m) * weights[f"{path}.running_var"] + m * var
    return expected


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("unbiased", [True, False])
def test_a_training_step_updates_running_statistics_by_the_spec_rule(backend, unbiased):
    model_spec = tiny_bn_model(unbiased=unbiased)
    impl = backends.get(backend)
    net = impl.build(model_spec, dtype="float64")
    weights = W.init(model_spec, seed=4, dtype="float64")
    impl.set_weights(net, weights)
    x = np.random.default_rng(5).standard_normal((3,) + model_spec.input_shape)
    expected = _expected_statistics(model_spec, impl, net, weights, x)
    after_forward = impl.get_weights(net)
    assert all(np.array_equal(after_forward[k], weights[k]) for k in weights), "forward(train=True) changed the model"
    impl.gradients(net, x, np.array([0, 2, 1]), train=True)
    after_step = impl.get_weights(net)
    for key, value in expected.items():
        assert np.max(np.abs(after_step[key] - value)) <= 1e-13 * np.max(np.abs(value)), key


@pytest.mark.parametrize("backend", backend_params())
def test_an_inference_mode_gradient_leaves_running_statistics_alone(backend):
    model_spec = tiny_bn_model()
    impl = backends.get(backend)
    net = impl.build(model_spec, dtype="float64")
    weights = W.init(model_spec, seed=4, dtype="float64")
    impl.set_weights(net, weights)
    impl.gradients(net, np.random.default_rng(5).standard_normal((3, 2, 5, 5)), np.array([0, 2, 1]), train=False)
    after = impl.get_weights(net)
    assert all(np.array_equal(after[k], weights[k]) for k in weights)


# ------------------------------------------------------- the modes pass on correct models


@needs_three
@pytest.mark.parametrize("name,shape,dtype", [
    ("lenet", (1, 28, 28), "float32"),  # sigmoid and average pools: no kink in float32
    ("nin", (1, 67, 67), "float64"),  # Dropout
    ("resnet18", (3, 32, 32), "float64"),  # BatchNorm on batch statistics
])
def test_gradients_agree(name, shape, dtype):
    result = run_grad(name, input_shape=shape, dtype=dtype)
    assert result.passed and result.exit_code == 0, training_report.text(result)
    for other in result.backends[1:]:
        r = result.results[other]
        assert r.first_divergent is None and r.input_grad.max_rel <= result.rtol
        assert [p.name for p in r.params] == [k for k in refnets.param_shapes(refnets.get_spec(name, input_shape=shape))
                                              if not k.endswith(("running_mean", "running_var"))]
    if name == "nin":
        assert result.dropout_removed == ("dropout",)


@needs_three
@pytest.mark.parametrize("name,shape,dtype", [("resnet18", (3, 32, 32), "float64"), ("tiny", None, "float32")])
def test_a_training_step_agrees(name, shape, dtype):
    model = tiny_bn_model() if name == "tiny" else name
    result = run_train(model, input_shape=shape, dtype=dtype)
    assert result.passed, training_report.text(result)
    stats = [p.name for p in result.results[result.backends[1]].params]
    assert stats and all(s.endswith(("running_mean", "running_var")) for s in stats)


@needs_three
@pytest.mark.parametrize("name,shape,dtype,optimizer", [
    ("lenet", (1, 28, 28), "float32", "sgd"),
    ("mnist_resnet", (1, 28, 28), "float64", "momentum"),  # fails if a framework rounds lr or momentum to float32
    ("tiny", None, "float64", "momentum"),  # running statistics over the steps
])
def test_optimiser_steps_agree(name, shape, dtype, optimizer):
    model = tiny_bn_model() if name == "tiny" else name
    result = run_train_steps(model, 3, input_shape=shape, dtype=dtype, optimizer=optimizer, floor=name == "tiny")
    assert result.passed, training_report.text(result)
    if name == "tiny":  # the reference against itself from weights one rounding unit apart
        assert len(result.floor) == 3 and all(0 < f < 1e-12 for f in result.floor)
    assert all(len(losses) == 3 for losses in result.losses.values())
    for other in result.backends[1:]:
        assert [s.step for s in result.results[other].steps] == [1, 2, 3]
    assert result.losses[result.reference][0] != result.losses[result.reference][2]  # the batches differ


# ----------------------------------------------------------------- faults are caught


def _momentum_as_torch(monkeypatch, backend):
    """The fault: a backend handed PyTorch's momentum where its framework expects 1 - that."""
    backends.get(backend)  # imports the framework
    module, name = {"keras": ("refnets.backends.keras.layers", "keras_momentum"),
                    "mxnet": ("refnets.backends.mxnet.build", "gluon_momentum")}[backend]
    monkeypatch.setattr(importlib.import_module(module), name, lambda node: node.momentum)


@pytest.mark.parametrize("backend", ["keras", "mxnet"])
def test_a_batchnorm_momentum_mapped_wrong_fails_train_and_is_named(backend, monkeypatch):
    if backend not in INSTALLED or "torch" not in INSTALLED:
        pytest.skip("needs torch and the backend")
    _momentum_as_torch(monkeypatch, backend)
    result = run_train(tiny_bn_model(), backends=["torch", backend])
    r = result.results[backend]
    assert result.exit_code == 1
    assert r.outputs.passed and r.loss.passed  # training-mode outputs do not read the running statistics
    assert r.first_divergent.name == "bn1.running_mean"
    assert "first divergent running statistic 'bn1.running_mean'" in training_report.text(result)


@pytest.mark.skipif(not {"torch", "keras"} <= set(INSTALLED), reason="needs torch and keras")
def test_a_training_mode_forward_fault_is_localised(monkeypatch):
    """The fault: keras builds one BatchNorm with another eps, which shows in the
    training-mode logits; the per-node comparison names the BatchNorm."""
    impl = backends.get("keras")
    original = impl.build

    def build(model_spec, dtype="float32"):
        root = S.replace(model_spec.root, "bn2", lambda node: dataclasses.replace(node, eps=0.5))
        return original(dataclasses.replace(model_spec, root=root), dtype)

    monkeypatch.setattr(impl, "build", build)
    result = run_train(tiny_bn_model(), backends=["torch", "keras"])
    r = result.results["keras"]
    assert result.exit_code == 1 and not r.outputs.passed
    assert r.localisation.first_divergent.path == "bn2" and r.localisation.input_agrees
    assert "first divergent node 'bn2' (BatchNorm)" in training_report.text(result)


def _freeze(monkeypatch, param):
    """The fault: torch builds the model with one parameter frozen (no gradient, never updated)."""
    impl = backends.get("torch")
    original = impl.build

    def build(model_spec, dtype="float32"):
        net = original(model_spec, dtype)
        dict(net.named_parameters())[param].requires_grad_(False)
        return net

    monkeypatch.setattr(impl, "build", build)


@needs_three
def test_a_dropped_bias_gradient_fails_grad_and_is_named(monkeypatch):
    _freeze(monkeypatch, "fc2.bias")
    result = run_grad("lenet", backends=["keras", "torch", "mxnet"])
    assert result.exit_code == 1
    assert result.results["mxnet"].passed  # mxnet agrees with the reference, keras
    r = result.results["torch"]
    assert r.first_divergent.name == "fc2.bias"
    assert [p.name for p in r.params if not p.comparison.passed] == ["fc2.bias"]
    assert r.input_grad.passed


@pytest.mark.skipif(not {"torch", "keras"} <= set(INSTALLED), reason="needs torch and keras")
def test_a_frozen_bias_fails_train_steps_at_the_first_step(monkeypatch):
    _freeze(monkeypatch, "fc2.bias")
    result = run_train_steps("lenet", 2, backends=["keras", "torch"], dtype="float32")
    r = result.results["torch"]
    assert result.exit_code == 1
    assert r.first_divergent.name == "fc2.bias" and r.first_divergent_step == 1
    assert not r.steps[0].passed and r.steps[0].loss.passed  # the first loss is computed before any update


@pytest.mark.skipif(not {"torch", "mxnet"} <= set(INSTALLED), reason="needs torch and mxnet")
def test_mxnet_rounds_optimiser_hyperparameters_to_float32():
    """MXNet's optimiser operators take lr and momentum as C floats: in float64 a
    learning rate of 0.01 differs from PyTorch's by 2e-8 in every update, which
    the report explains; at the default (a power of 2) they agree."""
    rounded = run_train_steps("lenet", 2, backends=["torch", "mxnet"], lr=0.01)
    assert not rounded.passed
    assert any("0.009999999776482582" in note for note in rounded.notes)
    assert run_train_steps("lenet", 2, backends=["torch", "mxnet"], lr=DEFAULT_LR).passed


@pytest.mark.skipif(not {"torch", "keras"} <= set(INSTALLED), reason="needs torch and keras")
def test_keras_trains_with_float64_hyperparameters():
    """Keras's SGD would hold the learning rate in a float32 variable and cast the
    momentum through a float32 tensor (measured: 5e-9 after 5 steps of lenet);
    the backend passes both as float64, so values float32 cannot hold agree too."""
    result = run_train_steps("lenet", 3, backends=["torch", "keras"], optimizer="momentum", lr=0.01, momentum=0.9)
    assert result.passed and not result.notes, training_report.text(result)


@pytest.mark.skipif(not {"torch", "keras", "mxnet"} <= set(INSTALLED), reason="needs all three backends")
def test_mxnet_inference_mode_batchnorm_gradient_is_caught():
    """A fault the gradient run found in MXNet 1.9.1 itself: outside training mode
    its BatchNorm backward gives a wrong input gradient (its own parameters'
    gradients are right), so every gradient before the last BatchNorm diverges,
    and the first divergent one in backpropagation order is just before it."""
    result = run_grad(tiny_bn_model(), train=False)
    assert result.results["keras"].passed
    mxnet = result.results["mxnet"]
    assert not mxnet.passed and not mxnet.input_grad.passed
    assert mxnet.first_divergent.name == "fc1.bias"
    agreeing = {p.name for p in mxnet.params if p.comparison.passed}
    assert agreeing == {"fc2.weight", "fc2.bias", "bn2.weight", "bn2.bias"}


@pytest.mark.skipif(not {"torch", "mxnet"} <= set(INSTALLED), reason="needs torch and mxnet")
def test_mxnet_float32_inference_mode_max_pool_gradient_is_caught():
    """Another: MXNet's float32 max-pool backward outside training mode routes the
    gradient to the wrong elements; in float64, or in training mode, it is right."""
    root = seq("", conv("conv", 3, 3, padding=1), relu("relu"), S.MaxPool(name="pool", kernel=(2, 2), stride=(2, 2)),
               S.Flatten(name="flatten"), dense("fc", 4))
    model = S.ModelSpec(name="tiny_pool", root=root, input_shape=(2, 6, 6))
    broken = run_grad(model, backends=["torch", "mxnet"], dtype="float32", train=False)
    assert not broken.results["mxnet"].input_grad.passed and broken.results["mxnet"].first_divergent.name == "conv.bias"
    assert run_grad(model, backends=["torch", "mxnet"], dtype="float64", train=False).passed
    assert run_grad(model, backends=["torch", "mxnet"], dtype="float32", train=True).passed


# ------------------------------------------------------------------------ the CLI


@needs_three
def test_cli_json_holds_the_per_step_figures_the_api_returns(tmp_path, capsys):
    path = tmp_path / "steps.json"
    args = ["mnist_resnet", "--train-steps", "2", "--optimizer", "momentum", "--quiet", "--json", str(path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ALL AGREE" in out and "per step" in out and "momentum 0.875" in out
    data = json.loads(path.read_text())
    api = run_train_steps("mnist_resnet", 2, optimizer="momentum")
    assert data["passed"] is True and data["mode"] == "train-steps" and data["dtype"] == "float64"
    assert data["losses"] == api.losses
    for name in api.backends[1:]:
        steps = data["comparisons"][name]["steps"]
        assert [s["weights"]["max_rel"] for s in steps] == [s.weights.max_rel for s in api.results[name].steps]


@needs_three
def test_cli_grad_exits_1_on_a_fault(monkeypatch, capsys):
    _freeze(monkeypatch, "fc3.bias")
    assert main(["lenet", "--grad", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "first divergent gradient in backpropagation order 'fc3.bias'" in out and "DISAGREEMENT" in out


@needs_three
def test_cli_train_exits_0(capsys):
    assert main(["nin", "--input-shape", "1,67,67", "--train", "--dtype", "float32", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dropout off: 'dropout' run as identity" in out and "ALL AGREE" in out


def _cli(*args):
    code = f"import sys; from parity.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize("args,message", [
    (("lenet", "--train-steps", "0"), "positive integer"),
    (("lenet", "--grad", "--lr", "0.1"), "--lr: only with --train-steps"),
    (("lenet", "--train", "--floor"), "--floor: only with --train-steps"),
    (("lenet", "--train-steps", "2", "--momentum", "0.5"), "--momentum applies to --optimizer momentum only"),
    (("lenet", "--train", "--inference"), "--inference applies to --grad only"),
    (("resnet18", "--train", "--input-shape", "3,32,32", "--batch", "1"), "use a batch of at least 2"),
    (("lenet", "--grad", "--against", "keras"), "does not combine with --against"),
    (("lenet", "--grad", "--train"), "not allowed with argument"),
])
def test_bad_training_flags_exit_2_without_traceback(args, message):
    result = _cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
