"""Conformance with the frameworks' own model zoos (keras.applications, Gluon's
model zoo, torchvision), the zoo importers, and the affine-free BatchNorm.

At 224x224, batch 1, every zoo model listed in the default plan runs against ONE
backend (spread over the three), and one model per zoo against all three; the
remaining VGGs (100M+ parameters, ~30 s each) are measured by
`python -m benchmarks.conformance`. REFNETS_FULL_CONFORMANCE=1 runs every zoo
model against every backend. torchvision: test_torchvision.py.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import refnets
from parity import run_against
from parity.cli import main
from refnets import backends, registry
from refnets.backends import catalog
from refnets import spec as S
from refnets import weights as W
from refnets import zoo_import as Z
from refnets.zoo.layers import bn, conv, seq

from conftest import INSTALLED, TOLERANCE, backend_params, seeded_input

FULL = os.environ.get("REFNETS_FULL_CONFORMANCE") == "1"
ALL = "all"

# (zoo, zoo model, the backend(s) it runs against by default). One backend per
# model, spread over the three; ALL for one model per zoo.
PLAN = [
    ("keras", "ResNet50V2", "keras"),
    ("keras", "ResNet101V2", "mxnet"),
    ("keras", "ResNet152V2", "torch"),
    ("keras", "VGG16", "torch"),
    ("keras", "DenseNet121", ALL),
    ("gluon", "resnet18_v1", "torch"),
    ("gluon", "resnet34_v1", "mxnet"),
    ("gluon", "resnet50_v1", "keras"),
    ("gluon", "resnet101_v1", "torch"),
    ("gluon", "resnet152_v1", "mxnet"),
    ("gluon", "resnet18_v2", "keras"),
    ("gluon", "resnet34_v2", "torch"),
    ("gluon", "resnet50_v2", ALL),  # the affine-free input BatchNorm in every backend
    ("gluon", "resnet101_v2", "mxnet"),
    ("gluon", "resnet152_v2", "torch"),
    ("gluon", "alexnet", "keras"),
    ("gluon", "densenet121", "mxnet"),
    ("gluon", "vgg11_bn", "torch"),
]
MEASURED_ONLY = [("keras", "VGG19"), ("gluon", "vgg11"), ("gluon", "vgg13"), ("gluon", "vgg16"), ("gluon", "vgg19"),
                 ("gluon", "vgg13_bn"), ("gluon", "vgg16_bn"), ("gluon", "vgg19_bn")]


def _zoo_installed(zoo):
    import importlib.util

    return importlib.util.find_spec(catalog.ZOOS[zoo].framework) is not None


def _cases():
    cases = []
    plan = PLAN + [(zoo, native, ALL) for zoo, native in MEASURED_ONLY] if FULL else PLAN
    for zoo, native, chosen in plan:
        chosen = list(backends.BACKENDS) if (chosen == ALL or FULL) else [chosen]
        missing = [b for b in chosen if b not in INSTALLED] + ([catalog.ZOOS[zoo].framework] if not _zoo_installed(zoo) else [])
        marks = pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")
        cases.append(pytest.param(zoo, native, chosen, marks=marks, id=f"{zoo}-{native}-{'+'.join(chosen)}"))
    return cases


@pytest.mark.parametrize("zoo,native,chosen", _cases())
def test_zoo_model_conforms(zoo, native, chosen):
    result = run_against(native, zoo, backends=chosen, batch=1)
    errors = {b: result.results[b].comparison.max_rel for b in chosen}
    assert result.passed and result.exit_code == 0, errors
    assert max(errors.values()) <= TOLERANCE["float32"], errors
    # the zoo model's own parameter counts equal the spec's (an affine-free BatchNorm's
    # fixed gamma and beta, which Gluon still holds, aside)
    spec = refnets.get_spec(result.model, **result.options)
    counts = refnets.counts(spec)
    fixed = sum(2 * info.in_shape[0] for info in refnets.infer(spec).values()
                if isinstance(info.node, S.BatchNorm) and not info.node.affine)
    trainable, total = result.param_counts[result.reference]
    assert (trainable, total - (fixed if zoo == "gluon" else 0)) == (counts.trainable, counts.total)
    for b in chosen:
        assert result.param_counts[b] == (counts.trainable, counts.total)


needs_mxnet = pytest.mark.skipif("mxnet" not in INSTALLED, reason="mxnet is not installed")
needs_keras = pytest.mark.skipif("keras" not in INSTALLED, reason="keras is not installed")


@needs_mxnet
@pytest.mark.parametrize("backend", backend_params(["torch"]))
def test_float64_conformance(backend):
    result = run_against("resnet18_v2", "gluon", backends=[backend], batch=1, dtype="float64")
    assert result.passed and result.results[backend].comparison.max_rel <= TOLERANCE["float64"]


# ----------------------------------------------------------------- names and options


def test_zoo_names_resolve_to_our_models_and_layouts():
    assert Z.resolve("gluon", "resnet50_v1") == (Z.ZOOS["gluon"][2], {"layout": "gluon"})
    entry, options = Z.resolve("gluon", "resnet50v2")
    assert entry.native == "resnet50_v2" and options == {"layout": "gluon"}
    assert Z.resolve("gluon", "vgg16", {"batch_norm": True})[0].native == "vgg16_bn"
    assert Z.resolve("gluon", "vgg16")[0].native == "vgg16"
    assert Z.resolve("keras", "resnet50v2")[0].native == "ResNet50V2"
    assert Z.resolve("keras", "densenet121")[1] == {"layout": "keras"}
    assert Z.resolve("keras", "DenseNet121", {"num_classes": 10})[1] == {"layout": "keras", "num_classes": 10}
    with pytest.raises(registry.UnknownModelError, match="resnet50_v1"):
        Z.resolve("gluon", "lenet")
    with pytest.raises(registry.BadOptionError, match="layout='gluon'"):
        Z.resolve("gluon", "resnet50", {"layout": "torchvision"})
    with pytest.raises(registry.BadOptionError, match="use_residual"):
        Z.resolve("gluon", "resnet50", {"use_residual": False})
    with pytest.raises(registry.BadOptionError, match="no vgg16"):
        Z.resolve("keras", "vgg16", {"batch_norm": True})


# Counts of the zoo models as the zoos report them (Keras: count_params(); Gluon: its
# parameters, grad_req != "null" for trainable). Gluon's ResNet v2 totals hold 6 more:
# the fixed gamma and beta of the affine-free input BatchNorm (3 channels).
ZOO_COUNTS = {
    ("gluon", "resnet18_v1"): (11_689_512, 11_699_112),
    ("gluon", "resnet34_v1"): (21_797_672, 21_814_696),
    ("gluon", "resnet50_v1"): (25_575_912, 25_629_032),
    ("gluon", "resnet101_v1"): (44_589_800, 44_695_144),
    ("gluon", "resnet152_v1"): (60_252_648, 60_404_072),
    ("gluon", "resnet18_v2"): (11_687_848, 11_695_796),
    ("gluon", "resnet34_v2"): (21_796_008, 21_811_380),
    ("gluon", "resnet50_v2"): (25_549_480, 25_595_060),
    ("gluon", "resnet101_v2"): (44_541_608, 44_639_412),
    ("gluon", "resnet152_v2"): (60_185_256, 60_329_140),
    ("gluon", "vgg11_bn"): (132_868_840, 132_874_344),
    ("gluon", "vgg19_bn"): (143_678_248, 143_689_256),
    ("gluon", "alexnet"): (61_100_840, 61_100_840),
    ("gluon", "densenet121"): (7_978_856, 8_062_504),
    ("keras", "DenseNet121"): (7_978_856, 8_062_504),
    ("keras", "ResNet152V2"): (60_236_904, 60_380_648),
    ("keras", "VGG19"): (143_667_240, 143_667_240),
}


@pytest.mark.parametrize("zoo,native", sorted(ZOO_COUNTS))
def test_new_layouts_count_what_the_zoo_models_count(zoo, native):
    entry, options = Z.resolve(zoo, native)
    counts = refnets.counts(refnets.get_spec(entry.model, **options))
    trainable, total = ZOO_COUNTS[(zoo, native)]
    fixed = 6 if native.endswith("_v2") else 0
    assert (counts.trainable, counts.total) == (trainable, total - fixed)


def test_gluon_layouts_differ_where_the_zoo_does():
    torchvision = refnets.infer(refnets.get_spec("resnet50"))
    gluon = refnets.infer(refnets.get_spec("resnet50", layout="gluon"))
    body = "layer2.0.res.body"
    assert gluon[f"{body}.conv1"].node.stride == (2, 2) and gluon[f"{body}.conv2"].node.stride == (1, 1)
    assert torchvision[f"{body}.conv1"].node.stride == (1, 1) and torchvision[f"{body}.conv2"].node.stride == (2, 2)
    assert gluon[f"{body}.conv1"].node.bias and gluon[f"{body}.conv3"].node.bias and not gluon[f"{body}.conv2"].node.bias
    assert refnets.param_shapes(refnets.get_spec("resnet18", layout="gluon")) == \
        refnets.param_shapes(refnets.get_spec("resnet18"))  # Gluon's basic blocks are torchvision's
    v2 = refnets.infer(refnets.get_spec("resnet50v2", layout="gluon"))
    assert v2["data_bn"].node.affine is False and "data_bn.weight" not in refnets.param_shapes(
        refnets.get_spec("resnet50v2", layout="gluon"))
    assert v2["layer2.0.res.body.conv2"].node.stride == (2, 2) and v2["layer2.0.res.downsample"].node.stride == (2, 2)
    he = refnets.param_shapes(refnets.get_spec("resnet18v2"))
    gluon18 = refnets.param_shapes(refnets.get_spec("resnet18v2", layout="gluon"))
    assert set(gluon18) - set(he) == {"data_bn.running_mean", "data_bn.running_var"} and set(he) <= set(gluon18)
    keras_densenet = refnets.infer(refnets.get_spec("densenet121", layout="keras"))
    assert keras_densenet["conv2.block1.new.0_bn"].node.eps == 1.001e-5
    assert isinstance(keras_densenet["pool1_pad"].node, S.ZeroPad) and keras_densenet["pool1"].node.padding == (0,) * 4
    with pytest.raises(registry.BadOptionError, match="layout"):
        refnets.get_spec("resnet50v2", layout="he")


# -------------------------------------------------------------- affine-free BatchNorm


def _affine_free_model():
    root = seq("", bn("data_bn", affine=False), conv("conv", 4, 3, padding=1), bn("bn"))
    return S.ModelSpec(name="affine_free", root=root, input_shape=(3, 6, 6))


def test_affine_free_batchnorm_holds_only_statistics():
    model = _affine_free_model()
    assert sorted(k for k in refnets.param_shapes(model) if k.startswith("data_bn")) == \
        ["data_bn.running_mean", "data_bn.running_var"]
    counts = refnets.counts(model)
    assert (counts.trainable, counts.total) == (4 * 3 * 9 + 4 + 2 * 4, 4 * 3 * 9 + 4 + 4 * 4 + 2 * 3)
    redrawn = W.randomize_batchnorm(W.init(model, seed=1), seed=2)
    assert sorted(redrawn) == sorted(refnets.param_shapes(model))


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_affine_free_batchnorm_in_every_backend(backend, dtype):
    model = _affine_free_model()
    impl = backends.get(backend)
    net = impl.build(model, dtype=dtype)
    weights = W.randomize_batchnorm(W.init(model, seed=1, dtype=dtype), seed=2)
    impl.set_weights(net, weights)
    assert sorted(impl.get_weights(net)) == sorted(weights)
    counts = refnets.counts(model)
    assert impl.count_params(net) == (counts.trainable, counts.total)
    x = seeded_input(model.input_shape, dtype=dtype)
    _, acts = impl.forward(net, x, capture=["data_bn"])
    mean, var = (weights[f"data_bn.{p}"][:, None, None] for p in ("running_mean", "running_var"))
    expected = (x.astype(np.float64) - mean) / np.sqrt(var.astype(np.float64) + 1e-5)
    assert np.max(np.abs(acts["data_bn"] - expected)) <= 10 * TOLERANCE[dtype] * np.max(np.abs(expected))
    if backend == "mxnet":  # Gluon still holds gamma and beta: fixed at 1 and 0, never canonical
        block = net._children["data_bn"]
        assert not np.any(block.beta.data().asnumpy()) and block.gamma.grad_req == "null"


# ------------------------------------------------------------------ mismatched models


def _gluon_zoo_model(native):
    adapter = Z.adapter("gluon")
    return adapter.build(Z.resolve("gluon", native)[0])


@needs_mxnet
def test_gluon_importer_names_the_first_mismatch():
    net = _gluon_zoo_model("resnet50_v1")
    with pytest.raises(Z.ZooMismatchError, match=r"layer1\.0\.res\.body\.conv1.*features\.4\.0\.body\.0.*bias"):
        Z.from_gluon(net, "resnet50", layout="torchvision")  # the bias on Gluon's 1x1 convs
    with pytest.raises(Z.ZooMismatchError, match=r"resnet101 .*first mismatch.*#"):
        Z.from_gluon(net, "resnet101_v1")
    weights = Z.from_gluon(net)  # the architecture from the block's class and structure
    assert sorted(weights) == sorted(refnets.param_shapes(refnets.get_spec("resnet50", layout="gluon")))
    v2 = _gluon_zoo_model("resnet18_v2")
    with pytest.raises(Z.ZooMismatchError, match=r"spec node 'conv1'.*zoo layer 'features.0'.*batchnorm"):
        Z.from_gluon(v2, "resnet18v2", layout="he")  # no input BatchNorm in the "he" layout


@needs_mxnet
def test_gluon_architecture_is_told_by_class_and_structure():
    from mxnet.gluon.model_zoo import vision
    from refnets.backends.mxnet import zoo as gluon_zoo

    for entry in Z.ZOOS["gluon"]:
        assert gluon_zoo.infer_arch(vision.get_model(entry.native)) == entry.native


@needs_mxnet
def test_gluon_importer_checks_strides_and_eps():
    net = _gluon_zoo_model("resnet18_v1")
    moved = refnets.get_spec("resnet18", layout="gluon")
    moved = dataclasses.replace(moved, root=S.replace(moved.root, "conv1", lambda n: dataclasses.replace(n, stride=(1, 1))))
    with pytest.raises(Z.ZooMismatchError, match=r"#0: spec node 'conv1'.*stride \(1, 1\) in the spec, \(2, 2\)"):
        Z.from_gluon(net, moved)
    eps = refnets.get_spec("resnet18")
    eps = dataclasses.replace(eps, root=S.replace(eps.root, "bn1", lambda n: dataclasses.replace(n, eps=1e-3)))
    with pytest.raises(Z.ZooMismatchError, match=r"'bn1'.*eps 0.001 in the spec, 1e-05"):
        Z.from_gluon(net, eps)


@needs_keras
def test_keras_importer_names_the_first_mismatch():
    adapter = Z.adapter("keras")
    model = adapter.build(Z.resolve("keras", "DenseNet121")[0])
    with pytest.raises(Z.ZooMismatchError, match=r"spec node 'features.conv0' .*no zoo layer named 'conv0'"):
        Z.from_keras(model, "densenet121", layout="torchvision")
    weights = Z.from_keras(model)  # the architecture from the model's own name
    assert sorted(weights) == sorted(refnets.param_shapes(refnets.get_spec("densenet121", layout="keras")))
    assert weights["conv1.conv.weight"].shape == (64, 3, 7, 7)  # HWIO -> OIHW


@needs_keras
def test_keras_vgg_fc1_rows_are_reordered_to_chw():
    from refnets.backends.keras import weights as KB

    c, h, w, out = 3, 2, 4, 5
    canonical = np.arange(out * c * h * w, dtype=np.float64).reshape(out, c * h * w)
    keras_kernel = KB.from_canonical(canonical, KB.NHWC_DENSE, (h, w, c))
    x = np.random.default_rng(0).standard_normal((c, h, w))
    assert np.allclose(x.transpose(1, 2, 0).reshape(-1) @ keras_kernel, canonical @ x.reshape(-1))
    assert np.array_equal(KB.to_canonical(keras_kernel, KB.NHWC_DENSE, (h, w, c)), canonical)


# --------------------------------------------------------------------- torchvision


def _torchvision_names(canonical_name):
    """Our torchvision-layout resnet names -> torchvision's state_dict names."""
    return (canonical_name.replace(".res.body.", ".").replace(".res.downsample.conv.", ".downsample.0.")
            .replace(".res.downsample.bn.", ".downsample.1."))


def _fake_torchvision_state_dict(name):
    weights = W.init(refnets.get_spec(name), seed=4)
    state = {}
    for key, value in weights.items():  # canonical order is torchvision's registration order
        state[_torchvision_names(key)] = value
        if key.endswith("running_var"):
            state[_torchvision_names(key).replace("running_var", "num_batches_tracked")] = np.array(0)
    return weights, state


def test_torchvision_state_dict_import_needs_no_torchvision():
    weights, state = _fake_torchvision_state_dict("resnet18")
    assert "layer2.0.downsample.1.running_mean" in state
    imported = Z.from_torchvision(state, "resnet18")
    assert sorted(imported) == sorted(weights)
    assert all(np.array_equal(imported[k], weights[k]) for k in weights)
    with pytest.raises(Z.ZooMismatchError, match=r"resnet34.*first mismatch"):
        Z.from_torchvision(state, "resnet34")
    del state["fc.bias"]
    with pytest.raises(Z.ZooMismatchError, match=r"'fc'.*parameters \['bias', 'weight'\] in the spec, \['weight'\]"):
        Z.from_torchvision(state, "resnet18")


@pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")
def test_torchvision_module_import_reads_and_writes_torch_modules():
    """The module path without torchvision: our own torch model has torchvision's
    module types and registration order."""
    from refnets.backends.torch import zoo as torchvision_zoo

    impl = backends.get("torch")
    spec = refnets.get_spec("resnet18", input_shape=(3, 32, 32))
    net = impl.build(spec)
    binding = torchvision_zoo.bind(net, spec)
    own = impl.get_weights(net)
    read = binding.read()
    assert sorted(read) == sorted(own) and all(np.array_equal(v, own[k]) for k, v in read.items())
    redrawn = W.randomize_batchnorm(read, seed=5)
    binding.write({"bn1.running_var": redrawn["bn1.running_var"]})
    assert np.array_equal(impl.get_weights(net)["bn1.running_var"], redrawn["bn1.running_var"])


def test_torchvision_googlenet_aux_heads_are_skipped():
    spec = refnets.get_spec("googlenet", layout="torchvision")
    weights = W.init(spec, seed=0)
    state = {k.replace("branch1.0.", "branch1.").replace("branch4.pool.", "branch4.0."): v for k, v in weights.items()}
    state = {**{"aux1.conv.conv.weight": np.zeros((128, 512, 1, 1))}, **state}
    assert sorted(Z.from_torchvision(state, "googlenet")) == sorted(weights)


# every torchvision model, float32 and float64, through the CLI: test_torchvision.py


# ---------------------------------------------------------------------------- CLI


@needs_mxnet
@pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")
def test_cli_against_gluon_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "r.json"
    code = main(["resnet18v2", "--against", "gluon", "--backends", "torch", "--batch", "1", "--quiet", "--json",
                 str(path)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "resnet18v2 (layout=gluon) against gluon.model_zoo resnet18_v2" in text and "ALL AGREE" in text
    data = json.loads(path.read_text())
    assert data["against"] == "gluon" and data["zoo_model"] == "resnet18_v2" and data["reference"] == "gluon.model_zoo"
    assert data["comparisons"]["torch"]["max_rel"] <= 1e-5 and "mxnet" in data["versions"]


@needs_mxnet
@pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")
def test_a_wrong_weight_against_the_zoo_fails_and_is_localised(monkeypatch, capsys):
    impl = backends.get("torch")
    original = impl.set_weights
    target = "layer3.1.res.body.bn2"

    def set_weights(model, weights):
        changed = dict(weights)
        changed[f"{target}.weight"] = weights[f"{target}.weight"] * np.float32(1.01)
        original(model, changed)

    monkeypatch.setattr(impl, "set_weights", set_weights)
    code = main(["resnet18_v1", "--against", "gluon", "--backends", "torch", "--batch", "1", "--quiet"])
    text = capsys.readouterr().out
    assert code == 1, text
    assert f"first divergent node '{target}' (BatchNorm)" in text and "DISAGREEMENT" in text


def _cli(*args):
    code = f"import sys; from parity.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize("args,message", [
    (("lenet", "--against", "gluon"), "has no model 'lenet'"),
    (("resnet50", "--against", "gluon", "--option", "layout=torchvision"), "layout='gluon'"),
    (("resnet50", "--against", "gluon", "--reference", "torch"), "--reference does not apply"),
    (("resnet50", "--against", "gluon", "--backends", "tf"), "unknown backend 'tf'"),
])
def test_bad_zoo_runs_exit_2_without_traceback(args, message):
    result = _cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_missing_zoo_framework_exits_2_naming_the_install():
    if _zoo_installed("torchvision"):
        pytest.skip("torchvision is installed")
    result = _cli("resnet18", "--against", "torchvision", "--backends", INSTALLED[0] if INSTALLED else "torch")
    assert result.returncode == 2
    assert "pip install torchvision" in result.stderr and "Traceback" not in result.stderr


def test_list_against_a_zoo():
    result = subprocess.run([sys.executable, "-m", "parity", "--list", "--against", "keras"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and "densenet121 (DenseNet121)" in result.stdout


def test_importing_the_importers_imports_no_framework():
    code = ("import sys, refnets.zoo_import, parity.conformance; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision', 'mxnet', 'keras', 'tensorflow')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
