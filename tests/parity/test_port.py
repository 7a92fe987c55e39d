"""Port checking (`parity --port`): the hand-written examples pass, and each
classic porting bug, introduced into a copy of them, fails at the right layer
with the right diagnosis."""

import json
import pathlib

import pytest

import parity
from parity.cli import main
from parity.port import match as port_match
from parity.port import run as port_run
from parity.reports import port as port_report
from refnets.trace import UntraceableError
from refnets.native import NativeLayer, Slot

from conftest import INSTALLED

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
RESNET = EXAMPLES / "torch_resnet50v2.py"
LENET = EXAMPLES / "torch_lenet.py"
SMALL = (3, 64, 64)  # every ResNet50V2 stage still has a spatial extent above 1

needs_torch = pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")


def _copy_with(tmp_path, source: pathlib.Path, *edits) -> str:
    """A copy of an example with each (old, new) edit applied exactly once."""
    text = source.read_text()
    for old, new in edits:
        assert text.count(old) == 1, f"the example no longer contains {old!r} exactly once"
        text = text.replace(old, new)
    path = tmp_path / f"edited_{source.name}"
    path.write_text(text)
    return f"{path}:build"


# ------------------------------------------------------------ structural matching


def _layer(name, kind="conv", shape=(8, 8, 1, 1)):
    return NativeLayer(name, kind, "Conv2d", {"weight": Slot(shape, lambda: None)})


def _ref(path, shape=(8, 8, 1, 1)):
    return port_match.RefLayer(path, "conv", None, {"weight": shape})


def test_match_follows_the_port_order_not_names():
    mapping = port_match.match([_ref("a"), _ref("b")], [_layer("x"), _layer("y")])
    assert [(r.path, u.name) for r, u in mapping.pairs] == [("a", "x"), ("b", "y")]
    assert mapping.complete


def test_a_name_equal_to_the_reference_path_wins_over_order():
    mapping = port_match.match([_ref("block.a"), _ref("b")], [_layer("y"), _layer("block_a")])
    assert [(r.path, u.name) for r, u in mapping.pairs] == [("block.a", "block_a"), ("b", "y")]


def test_unmatched_layers_are_reported_with_the_nearest_candidate():
    mapping = port_match.match([_ref("a"), _ref("b", (8, 4, 3, 3))], [_layer("x"), _layer("y", shape=(8, 4, 1, 1))])
    assert not mapping.complete
    (ref, why), = mapping.unmatched_ref
    assert ref.path == "b" and "nearest unmatched: 'y'" in why and "weight 8x4x1x1" in why
    assert [u.name for u, _ in mapping.unmatched_user] == ["y"]


# ------------------------------------------------------------- the examples pass


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resnet50v2_example_port_matches(dtype):
    result = parity.run_port("resnet50v2", f"{RESNET}:build", "torch", input_shape=SMALL, dtype=dtype)
    assert result.passed, port_report.text(result)
    assert len(result.mapping.pairs) == 103 and not result.unused
    assert result.comparison.max_rel <= result.rtol


@needs_torch
def test_resnet50v2_example_passes_the_cli_at_224(capsys):
    assert main(["resnet50v2", "--port", f"{RESNET}:build", "--port-backend", "torch", "--quiet"]) == 0
    assert "PORT MATCHES THE REFERENCE" in capsys.readouterr().out


@needs_torch
@pytest.mark.skipif("keras" not in INSTALLED, reason="keras is not installed")
def test_the_reference_may_be_another_backend():
    result = parity.run_port("lenet", f"{LENET}:build", "torch", reference="keras")
    assert result.passed and result.reference == "keras"


@needs_torch
def test_assert_port_matches_returns_the_result_or_raises_with_the_report(tmp_path):
    assert parity.assert_port_matches("lenet", f"{LENET}:build").passed
    broken = _copy_with(tmp_path, LENET, ("x = torch.flatten(x, 1)", "x = x.permute(0, 2, 3, 1).flatten(1)"))
    with pytest.raises(AssertionError, match="diagnosis \\(flatten_order\\)"):
        parity.assert_port_matches("lenet", broken)


# --------------------------------------------------- classic porting bugs, named

BUGS = {
    "batchnorm_eps": (("self.bn2 = nn.BatchNorm2d(width, eps=BN_EPS)", "self.bn2 = nn.BatchNorm2d(width, eps=1e-3)"),),
    "padding": (("self.conv2(F.pad(out, (1, 1, 1, 1)))",
                 "self.conv2(F.pad(out, (0, 1, 0, 1) if self.stride == 2 else (1, 1, 1, 1)))"),),
    "stride": (("strides = [1] * (blocks - 1) + [stride]", "strides = [stride] + [1] * (blocks - 1)"),),
    "pool_padding": (("self.stem_pool(F.pad(x, (1, 1, 1, 1)))", "self.stem_pool(x)"),
                     ("nn.MaxPool2d(3, stride=2)", "nn.MaxPool2d(3, stride=2, padding=1)")),
}
WHERE = {  # kind -> (reference node, port layer) where the bug shows first
    "batchnorm_eps": ("conv2.block1.res.body.2_bn", "stage1.0.bn2"),
    "padding": ("conv2.block3.res.body.2_conv", "stage1.2.conv2"),  # the first stride-2 3x3 conv
    "stride": ("conv2.block1.res.body.2_conv", "stage1.0.conv2"),
    "pool_padding": ("conv2.block1.preact_bn", "stage1.0.preact_bn"),  # the first layer after the stem pool
}


@needs_torch
@pytest.mark.parametrize("kind", sorted(BUGS))
def test_a_porting_bug_is_named_at_its_block(tmp_path, kind):
    result = parity.run_port("resnet50v2", _copy_with(tmp_path, RESNET, *BUGS[kind]), "torch", input_shape=SMALL)
    assert not result.passed and result.exit_code == 1
    assert (result.first_divergent.reference, result.first_divergent.port) == WHERE[kind]
    assert result.diagnosis.kind == kind, result.diagnosis.message


@needs_torch
def test_pytorchs_default_eps_is_caught_in_float64(tmp_path):
    """eps 1e-5 instead of Keras' 1.001e-5 changes outputs by ~1e-8 relative:
    below float32's bar, well above float64's."""
    port = _copy_with(tmp_path, RESNET, ("self.bn2 = nn.BatchNorm2d(width, eps=BN_EPS)", "self.bn2 = nn.BatchNorm2d(width)"))
    result = parity.run_port("resnet50v2", port, "torch", input_shape=SMALL, dtype="float64")
    assert not result.passed
    assert result.first_divergent.reference == "conv2.block1.res.body.2_bn"
    assert result.diagnosis.kind == "batchnorm_eps" and "eps=1e-05" in result.diagnosis.message


@needs_torch
def test_a_channels_last_flatten_is_named(tmp_path):
    port = _copy_with(tmp_path, LENET, ("x = torch.flatten(x, 1)", "x = x.permute(0, 2, 3, 1).flatten(1)"))
    result = parity.run_port("lenet", port, "torch")
    assert (result.first_divergent.reference, result.first_divergent.port) == ("fc1", "f5")
    assert result.diagnosis.kind == "flatten_order"


@needs_torch
def test_a_wrong_operation_between_layers_is_located(tmp_path):
    port = _copy_with(tmp_path, LENET, ("self.s2 = nn.AvgPool2d(2, stride=2)", "self.s2 = nn.MaxPool2d(2, stride=2)"))
    result = parity.run_port("lenet", port, "torch")
    assert result.first_divergent.reference == "conv2"
    assert result.diagnosis.kind == "between" and "'pool1' (AvgPool)" in result.diagnosis.message


@needs_torch
def test_a_difference_after_the_last_mapped_layer_is_said_so(tmp_path, capsys):
    port = _copy_with(tmp_path, LENET, ("return self.out(x)", "return torch.softmax(self.out(x), dim=1)"))
    assert main(["lenet", "--port", port, "--quiet"]) == 1
    assert "every mapped layer agrees, the output does not" in capsys.readouterr().out


@needs_torch
def test_graph_position_keeps_same_shaped_layers_apart():
    """A bottleneck's last 1x1 conv and its projection shortcut have the same
    shapes; matched by graph position, each gets its own weights."""
    result = parity.run_port("resnet50v2", f"{RESNET}:build", "torch", input_shape=SMALL)
    assert result.passed and result.matched_by == "graph position" and result.reassigned == 0
    assert result.mapping.user_for("conv2.block1.res.0_conv").name == "stage1.0.shortcut"
    assert result.mapping.user_for("conv2.block1.res.body.3_conv").name == "stage1.0.conv3"


@needs_torch
def test_confused_same_shaped_layers_are_reassigned_by_their_inputs(monkeypatch):
    """Where the port cannot be traced, weights are matched by order and shape; a
    first mapping that swaps two same-shaped layers is settled by their inputs."""
    original = port_match.match

    def untraceable(*args, **kwargs):
        raise UntraceableError("cannot trace op 'demo'")

    monkeypatch.setattr(port_run, "trace", untraceable)

    def confused(ref_layers, user_layers):
        mapping = original(ref_layers, user_layers)
        port_match.swap(mapping, "conv2.block1.res.body.3_conv", mapping.user_for("conv2.block1.res.0_conv"))
        return mapping

    monkeypatch.setattr(port_match, "match", confused)
    result = parity.run_port("resnet50v2", f"{RESNET}:build", "torch", input_shape=SMALL)
    assert result.passed and result.reassigned == 1 and "could not be traced: cannot trace op 'demo'" in result.matched_by
    assert result.mapping.user_for("conv2.block1.res.0_conv").name == "stage1.0.shortcut"


@needs_torch
def test_a_port_that_cannot_take_the_weights_fails_with_what_is_missing(tmp_path, capsys):
    port = _copy_with(tmp_path, LENET, ("nn.Linear(120, 84)", "nn.Linear(120, 80)"),
                      ("nn.Linear(84, num_classes)", "nn.Linear(80, num_classes)"))
    json_path = tmp_path / "port.json"
    assert main(["lenet", "--port", port, "--quiet", "--json", str(json_path)]) == 1
    out = capsys.readouterr().out
    assert "reference 'fc2' not matched" in out and "port layer 'f6'" in out and "PORT DIFFERS" in out
    report = json.loads(json_path.read_text())
    assert report["passed"] is False and report["output"] is None
    assert {u["layer"] for u in report["mapping"]["unmatched_port"]} == {"f6", "out"}


# ------------------------------------------------------------------ usage errors


@needs_torch
@pytest.mark.parametrize("port, message", [
    ("no_colon", "MODULE:CALLABLE"),
    ("no_such_module_xyz:build", "ModuleNotFoundError"),
    (f"{LENET}:no_such_callable", "has no 'no_such_callable'"),
    (f"{LENET}:LeNet.__init__", "has no"),
])
def test_bad_port_arguments_exit_2(port, message, capsys):
    assert main(["lenet", "--port", port, "--quiet"]) == 2
    assert message in capsys.readouterr().err


@needs_torch
def test_a_port_that_fails_or_is_not_a_model_exits_2(tmp_path, capsys):
    failing = tmp_path / "failing.py"
    failing.write_text("def build():\n    raise RuntimeError('no weights here')\n\ndef other():\n    return 3\n")
    assert main(["lenet", "--port", f"{failing}:build", "--quiet"]) == 2
    assert "RuntimeError: no weights here" in capsys.readouterr().err
    assert main(["lenet", "--port", f"{failing}:other", "--quiet"]) == 2
    assert "must return a torch.nn.Module" in capsys.readouterr().err
    assert main(["lenet", "--port", f"{LENET}:build", "--against", "keras", "--quiet"]) == 2
    assert "does not apply to a port check" in capsys.readouterr().err


# ------------------------------------------------------ Keras and Gluon ports

needs_keras = pytest.mark.skipif("keras" not in INSTALLED, reason="keras is not installed")
needs_mxnet = pytest.mark.skipif("mxnet" not in INSTALLED, reason="mxnet is not installed")


def _example(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_keras
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_channels_last_keras_port_with_fused_activations_matches(dtype):
    result = parity.run_port("lenet", f"{EXAMPLES / 'keras_lenet.py'}:build", "keras", dtype=dtype)
    assert result.passed and result.comparison.max_rel <= result.rtol


@needs_keras
def test_keras_applications_resnet50v2_passes_as_a_port():
    """keras.applications' own ResNet50V2: its projection shortcut and last 1x1
    conv of a stage's first block share shapes, and Keras lists the shortcut
    first; the mapping settles them by their inputs."""
    build = _example("keras_resnet50v2").build
    result = parity.run_port("resnet50v2", lambda: build((64, 64, 3)), "keras", input_shape=SMALL)
    assert result.passed and len(result.mapping.pairs) == 103


@needs_keras
def test_a_keras_padding_bug_is_named(tmp_path):
    port = _copy_with(tmp_path, EXAMPLES / "keras_lenet.py", (
        'x = layers.Conv2D(6, 5, padding="same", activation="sigmoid", name="c1")(inputs)',
        'x = layers.Conv2D(6, 5, activation="sigmoid", name="c1")(layers.ZeroPadding2D(((1, 3), (1, 3)))(inputs))'))
    result = parity.run_port("lenet", port, "keras")
    assert (result.first_divergent.reference, result.first_divergent.port) == ("conv1", "c1")
    assert result.diagnosis.kind == "padding"
    assert "(top 1, bottom 3, left 1, right 3)" in result.diagnosis.message


@needs_keras
def test_a_keras_port_whose_shapes_differ_names_the_unmatched_layers(tmp_path):
    port = _copy_with(tmp_path, EXAMPLES / "keras_lenet.py",
                      ('layers.Conv2D(6, 5, padding="same"', 'layers.Conv2D(6, 5, padding="valid"'))
    result = parity.run_port("lenet", port, "keras")
    assert not result.passed and result.comparison is None
    (ref, why), = result.mapping.unmatched_ref
    assert ref.path == "fc1" and "weight 120x400" in why and "'f5' (Dense), has bias 120, weight 120x256" in why
    assert "conv1: padding (2, 2, 2, 2) vs (0, 0, 0, 0)" in port_report.text(result)


@needs_mxnet
def test_the_gluon_zoo_resnet50_v2_passes_as_a_port_and_an_eps_change_is_named():
    """Gluon's affine-free input BatchNorm maps onto the reference's (layout=gluon)."""
    net = _example("gluon_resnet50v2").build()
    options = {"layout": "gluon"}
    assert parity.run_port("resnet50v2", net, "mxnet", input_shape=SMALL, options=options).passed
    bn = net.features[5][1].bn2  # features: bn, conv, bn, relu, pool, then stage 1; its second block
    bn._kwargs["eps"] = 1e-3
    result = parity.run_port("resnet50v2", net, "mxnet", input_shape=SMALL, options=options)
    assert result.first_divergent.reference == "layer1.1.res.body.bn2"
    assert result.diagnosis.kind == "batchnorm_eps"
