"""Generated PyTorch source: for the zoo and for every node type of the vocabulary,
the generated module builds, loads seeded canonical weights by name and agrees
with our torch backend exactly in float32 (the same torch ops, so a max abs error
of 0) and with the numpy reference within the float64 bar; it imports only torch
and the standard library, is ruff-format-clean and lint-clean, and writes
repeated blocks as classes and stages as tables."""

import ast
import os

import numpy as np
import pytest

import refnets
from refnets import backends
from refnets.__main__ import main as refnets_main
from refnets.codegen import generate

from conftest import INSTALLED, TOLERANCE, relative_error, seeded_input
from codegen_helpers import SMALL, VOCABULARY, max_abs, seeded_weights, small_spec, write_module


pytestmark = pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")

# Run end to end (deep and wide models are checked structurally below: building
# 100M+ parameters twice adds minutes and no new block kinds).
NUMERIC = ["lenet", "nin", "googlenet", "densenet121", "mnist_googlenet", "mnist_resnet", "resnet18", "resnet18v2",
           "resnet50v2"]


def _run_generated(module, weights_path, x, double=False):
    import torch

    from refnets.backends.torch.framework import ensure_threads

    ensure_threads()  # our backend's thread count (MXNet's import leaves torch one): see test_zoo_numeric
    model = module.build()
    model = module.load_canonical(model.double() if double else model, weights_path)
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _check_exact(spec, tmp_path):
    """float32 against the torch backend (max abs error 0), float64 against the
    numpy reference (relative error within the float64 bar)."""
    module, _ = write_module(spec, "torch", tmp_path)
    torch_backend, numpy_backend = backends.get("torch"), backends.get("numpy")
    weights, path = seeded_weights(spec, tmp_path, "float32")
    ours = torch_backend.build(spec)
    torch_backend.set_weights(ours, weights)
    x = seeded_input(spec.input_shape)
    assert max_abs(_run_generated(module, path, x), torch_backend.forward(ours, x)[0]) == 0.0
    weights, path = seeded_weights(spec, tmp_path, "float64")
    reference = numpy_backend.build(spec, dtype="float64")
    numpy_backend.set_weights(reference, weights)
    x = seeded_input(spec.input_shape, dtype="float64")
    out = _run_generated(module, path, x, double=True)
    assert relative_error(out, numpy_backend.forward(reference, x)[0]) <= TOLERANCE["float64"]


@pytest.mark.parametrize("name", NUMERIC)
def test_generated_zoo_model_agrees_exactly_with_the_torch_backend(name, tmp_path):
    _check_exact(small_spec(name), tmp_path)


@pytest.mark.parametrize("case", sorted(VOCABULARY))
def test_every_node_type_is_generated_exactly(case, tmp_path):
    _check_exact(VOCABULARY[case], tmp_path)


@pytest.mark.parametrize("name", refnets.list_models())
def test_every_zoo_model_has_the_canonical_state_dict(name, tmp_path):
    """Built on the meta device (no memory, no initialisers): the state_dict keys and
    shapes are the spec's canonical parameters, so weights map by name."""
    import torch

    spec = refnets.get_spec(name, input_shape=SMALL.get(name))
    module, _ = write_module(spec, "torch", tmp_path)
    with torch.device("meta"):
        model = module.build()
    state = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert state == {k: tuple(v) for k, v in refnets.param_shapes(spec).items()}


def test_generated_source_imports_only_torch_and_the_standard_library():
    allowed = {"json", "torch", "torch.nn.functional"}
    for name in ("resnet50v2", "googlenet"):
        tree = ast.parse(generate(refnets.get_spec(name), "torch"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert imported <= allowed, imported


def test_blocks_are_classes_and_stages_are_tables():
    """A deeper variant adds table rows' counts, not code: resnet152 is as long as
    resnet50, and its blocks are a handful of classes."""
    for short, deep in (("resnet50", "resnet152"), ("resnet50v2", "resnet152v2")):
        a, b = (generate(refnets.get_spec(n), "torch") for n in (short, deep))
        assert len(a.splitlines()) == len(b.splitlines())
        assert "STAGES = {" in b
        classes = [n.name for n in ast.parse(b).body if isinstance(n, ast.ClassDef)]
        assert 2 <= len(classes) <= 6, classes
    source = generate(refnets.get_spec("resnet50"), "torch")
    assert "(Bottleneck, 5, 256)" in source  # layer3: the five blocks after the projecting one


def test_the_code_command_writes_the_module(tmp_path, capsys):
    out = tmp_path / "lenet_torch.py"
    assert refnets_main(["code", "lenet", "--framework", "torch", "--option", "num_classes=7",
                         "--out", str(out)]) == 0
    assert "nn.Linear(84, num_classes)" in out.read_text()
    assert "num_classes=7" in out.read_text()
    assert refnets_main(["code", "lenet", "--framework", "torch"]) == 0
    assert capsys.readouterr().out.startswith('"""lenet in PyTorch')
    assert refnets_main(["code", "nosuchnet", "--framework", "torch"]) == 2


def test_options_reach_the_generated_model(tmp_path):
    module, _ = write_module(small_spec("lenet"), "torch", tmp_path)
    model = module.build(num_classes=3)
    assert model.fc3.out_features == 3
    assert os.path.exists(module.__file__)
    assert np.isfinite(_run_generated_shape(model))


def _run_generated_shape(model):
    import torch

    return float(model(torch.zeros(1, 1, 28, 28)).sum())
