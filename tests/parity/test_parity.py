"""The parity harness: CLI verdicts, localisation of injected faults, errors, JSON."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import refnets
from parity import run
from parity.cli import main
from parity.engine.metrics import compare
from parity.reports import inference as report
from refnets import backends
from refnets import spec as S
from refnets import weights as W

from conftest import INSTALLED, SMALL_INPUTS

needs_three = pytest.mark.skipif(len(INSTALLED) < 3, reason="needs all three backends")
needs_two = pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends")


@pytest.mark.skipif(not INSTALLED, reason="needs a framework beside numpy")
@pytest.mark.parametrize("capture_is_plain_forward", [True, False])
def test_with_layers_a_capture_on_another_path_leaves_the_verdict_to_the_plain_forward(
        capture_is_plain_forward, monkeypatch):
    """numpy's capturing forward is made to return a wrong output: judged when the
    catalog says its capture is its plain forward, ignored (the plain forward's
    output judged) when it says not, as for Gluon."""
    from refnets.backends.numpy_ref import NumpyBackend

    stream = NumpyBackend.stream
    monkeypatch.setattr(NumpyBackend, "stream", lambda self, *args, **kw: stream(self, *args, **kw) + 1.0)
    record = dataclasses.replace(backends.catalog.BACKENDS["numpy"], capture_is_plain_forward=capture_is_plain_forward)
    monkeypatch.setitem(backends.catalog.BACKENDS, "numpy", record)
    result = run("lenet", backends=[INSTALLED[0], "numpy"], layers=True)
    assert result.results["numpy"].comparison.passed is not capture_is_plain_forward
    assert result.results["numpy"].localisation.first_divergent is None  # the nodes themselves agree
    assert ("numpy" in result.timings.get("forward", {})) is not capture_is_plain_forward


def _plain_forward_too(names):
    return [n for n in names if not backends.catalog.BACKENDS[n].capture_is_plain_forward]


def _shape_arg(name):
    return ",".join(map(str, SMALL_INPUTS[name]))


def _cli_cases():
    """Every foundation model in float32 (vgg13 and vgg19, only deeper than vgg11 and
    vgg16, in the slow set); float64 too for all but the 100M+-parameter VGGs, whose
    float64 agreement test_backends covers (vgg11, vgg16) or the slow set does."""
    cases = [pytest.param(name, "float32", id=f"{name}-float32",
                          marks=[pytest.mark.slow] if name in ("vgg13", "vgg19") else [])
             for name in sorted(SMALL_INPUTS)]
    cases += [pytest.param(name, "float64", id=f"{name}-float64",
                           marks=[pytest.mark.slow] if name.startswith("vgg") else [])
              for name in sorted(SMALL_INPUTS)]
    return cases


@needs_three
@pytest.mark.parametrize("name,dtype", _cli_cases())
def test_cli_agrees_on_every_foundation_model(name, dtype, capsys):
    code = main([name, "--backends", "torch,mxnet,keras", "--input-shape", _shape_arg(name), "--dtype", dtype,
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ALL AGREE" in out and out.count("PASS") == 2


@needs_three
@pytest.mark.parametrize("reference", ["mxnet", "keras"])
def test_any_backend_can_be_the_reference(reference, capsys):
    assert main(["lenet", "--reference", reference, "--quiet"]) == 0
    assert f"reference {reference}" in capsys.readouterr().out


def _perturbing(monkeypatch, backend, key):
    """Make `backend` receive one weight tensor slightly changed."""
    impl = backends.get(backend)
    original = impl.set_weights

    def set_weights(model, weights):
        changed = dict(weights)
        changed[key] = weights[key] * np.asarray(1.01, weights[key].dtype)
        original(model, changed)

    monkeypatch.setattr(impl, "set_weights", set_weights)


@needs_two
@pytest.mark.parametrize("backend", [b for b in ("mxnet", "keras", "torch")])
def test_a_perturbed_weight_fails_and_is_localised(backend, monkeypatch, capsys, tmp_path):
    if backend not in INSTALLED:
        pytest.skip(f"{backend} not installed")
    others = [b for b in INSTALLED if b != backend]
    _perturbing(monkeypatch, backend, "block2.mlp1.weight")
    out_json = tmp_path / "r.json"
    code = main(["nin", "--backends", f"{others[0]},{backend}", "--input-shape", _shape_arg("nin"), "--quiet",
                 "--json", str(out_json)])
    text = capsys.readouterr().out
    assert code == 1, text
    assert "first divergent node 'block2.mlp1' (Conv2d)" in text
    assert "its input agrees, so the fault is in this node" in text
    first = json.loads(out_json.read_text())["comparisons"][backend]["localisation"]["first_divergent"]
    assert first["node"] == "block2.mlp1" and first["input_agrees"] is True


def _resnet_with_eps(model_spec, path, eps):
    root = S.replace(model_spec.root, path, lambda node: dataclasses.replace(node, eps=eps))
    return dataclasses.replace(model_spec, root=root)


@needs_two
def test_a_changed_batchnorm_eps_in_one_block_fails_and_is_localised(monkeypatch, capsys):
    target = "layer3.1.res.body.bn2"
    impl = backends.get(INSTALLED[1])
    original = impl.build
    monkeypatch.setattr(impl, "build", lambda spec, dtype="float32": original(_resnet_with_eps(spec, target, 1e-1), dtype))
    code = main(["resnet18", "--backends", f"{INSTALLED[0]},{INSTALLED[1]}", "--input-shape", "3,32,32", "--quiet"])
    text = capsys.readouterr().out
    assert code == 1, text
    assert f"first divergent node '{target}' (BatchNorm)" in text


@needs_two
def test_nan_never_passes(monkeypatch, capsys, tmp_path):
    impl = backends.get(INSTALLED[1])
    original = impl.forward

    def forward(model, x, capture=(), train=False):
        out, acts = original(model, x, capture, train)
        return out * np.nan, acts

    monkeypatch.setattr(impl, "forward", forward)
    path = tmp_path / "nan.json"
    code = main(["lenet", "--backends", ",".join(INSTALLED[:2]), "--quiet", "--atol", "1e9", "--json", str(path)])
    assert code == 1
    assert "NaN/Inf" in capsys.readouterr().out

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    figures = json.loads(path.read_text(), parse_constant=refuse)["comparisons"][INSTALLED[1]]
    assert figures["finite"] is False and figures["passed"] is False and figures["max_abs"] is None


def test_compare_figures():
    ref = np.array([[1.0, 2.0, -4.0], [0.5, 0.1, 0.2]])
    out = ref.copy()
    out[0, 1] += 1e-3
    c = compare(out, ref, rtol=1e-5, atol=0.0)
    assert not c.passed and c.max_abs == pytest.approx(1e-3) and c.max_rel == pytest.approx(2.5e-4)
    assert c.top1 == 1.0
    assert compare(out, ref, rtol=1e-3, atol=0.0).passed
    assert not compare(out[:1], ref, 1, 1).passed


@needs_two
def test_json_holds_the_figures_and_versions(tmp_path, capsys):
    path = tmp_path / "out.json"
    assert main(["lenet", "--backends", ",".join(INSTALLED), "--quiet", "--layers", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["passed"] is True and data["model"] == "lenet"
    for name in INSTALLED[1:]:
        figures = data["comparisons"][name]
        assert figures["max_rel"] <= 1e-5 and figures["passed"] is True
        assert [n["node"] for n in figures["localisation"]["nodes"]][:2] == ["conv1", "act1"]
    for name in INSTALLED:  # with --layers each forward is the capturing one, timed under localise
        assert data["timings_s"]["localise"][name] >= 0
    assert set(data["timings_s"].get("forward", {})) == set(_plain_forward_too(INSTALLED))
    assert {"numpy", "python"} <= set(data["versions"])
    assert "per-node comparison" in capsys.readouterr().out


@needs_two
def test_weights_file_round_trip(tmp_path, capsys):
    saved = tmp_path / "w.safetensors"
    assert main(["lenet", "--backends", ",".join(INSTALLED[:2]), "--quiet", "--save-weights", str(saved)]) == 0
    assert sorted(W.load(str(saved))) == sorted(refnets.param_shapes(refnets.get_spec("lenet")))
    assert main(["lenet", "--backends", ",".join(INSTALLED[:2]), "--quiet", "--weights", str(saved)]) == 0


def _cli(*args, prelude=""):
    code = f"{prelude}import sys; from parity.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize("args,message", [
    (("lenett",), "Did you mean lenet"),
    (("lenet", "--backends", "torch,tf"), "unknown backend 'tf'"),
    (("alexnet", "--input-shape", "3,32,32"), "features.pool5"),
    (("lenet", "--weights", "/nonexistent.npz"), "no such weight file"),
    (("lenet", "--option", "num_clases=3"), "no option"),
    (("lenet", "--backends", "torch"), "at least two backends"),
    ((), "name a model"),
])
def test_bad_input_exits_2_without_traceback(args, message):
    result = _cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_mismatched_weight_file_exits_2(tmp_path):
    path = str(tmp_path / "w.npz")
    W.save(path, W.init(refnets.get_spec("lenet", num_classes=5)))
    result = _cli("lenet", "--weights", path)
    assert result.returncode == 2
    assert "fc3.weight: expected (10, 84), got (5, 84)" in result.stderr and "Traceback" not in result.stderr


def test_missing_framework_names_the_extra():
    result = _cli("lenet", "--backends", "torch,mxnet", prelude="import sys; sys.modules['mxnet'] = None; ")
    assert result.returncode == 2
    assert "pip install 'refnets[mxnet]'" in result.stderr and "Traceback" not in result.stderr


def test_help_imports_no_framework():
    code = ("import sys; from parity.cli import parser; parser().format_help(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'mxnet', 'keras', 'tensorflow')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
    help_run = subprocess.run([sys.executable, "-m", "parity", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "--backends" in help_run.stdout


@needs_two
def test_python_api_returns_a_result():
    result = run("mnist_resnet", backends=INSTALLED[:2], dtype="float64", layers=True)
    assert result.passed and result.exit_code == 0
    other = result.results[INSTALLED[1]]
    assert other.comparison.max_rel <= 1e-10
    assert other.localisation.first_divergent is None
    assert "ALL AGREE" in report.text(result)


@needs_two
def test_with_layers_the_capturing_forwards_are_the_forwards_and_give_the_same_verdicts():
    """`layers` spares the plain forwards: the outputs compared are the capturing
    forwards' own, with the very figures the plain forwards give; only a backend
    whose capture runs another path (Gluon's imperative one) runs its plain
    forward too."""
    chosen = INSTALLED[:3]
    plain = run("mnist_resnet", backends=chosen, layers=False)
    layered = run("mnist_resnet", backends=chosen, layers=True)
    assert set(plain.timings["forward"]) == set(chosen)
    assert set(layered.timings.get("forward", {})) == set(_plain_forward_too(chosen))
    assert set(layered.timings["localise"]) == set(chosen)
    for name in chosen[1:]:
        assert layered.results[name].comparison == plain.results[name].comparison
        assert plain.results[name].localisation is None
        nodes = layered.results[name].localisation.nodes
        assert len(nodes) == len(list(refnets.get_spec("mnist_resnet").walk())) - 1
        assert all(n.comparison.passed for n in nodes)
