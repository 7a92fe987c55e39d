"""Generated MXNet Gluon source: for the zoo and for every node type of the
vocabulary, the generated module builds a hybridized HybridBlock, loads seeded
canonical weights by name and agrees with our mxnet backend within the float32 bar
and with the numpy reference within the float64 bar; it imports only mxnet, numpy
and the standard library, is ruff-format-clean and lint-clean, and writes repeated
blocks as classes and stages as tables."""

import ast
import inspect
import re

import pytest

import refnets
from refnets import backends
from refnets.__main__ import main as refnets_main
from refnets.codegen import generate

from conftest import INSTALLED, TOLERANCE, relative_error, seeded_input
from codegen_helpers import SMALL, VOCABULARY, seeded_weights, small_spec, write_module


pytestmark = pytest.mark.skipif("mxnet" not in INSTALLED, reason="mxnet is not installed")

# Run end to end (the other models are checked structurally below).
NUMERIC = ["lenet", "nin", "googlenet", "densenet121", "mnist_googlenet", "mnist_resnet", "resnet18", "resnet18v2",
           "resnet50v2"]


def _run_generated(module, weights_path, x):
    import mxnet as mx

    model = module.build()
    if x.dtype != "float32":
        model.cast(str(x.dtype))
    model = module.load_canonical(model, weights_path)
    return model(mx.nd.array(x, dtype=x.dtype)).asnumpy()


def _errors(spec, folder):
    """(float32 error against the mxnet backend, float64 error against numpy)."""
    module, _ = write_module(spec, "mxnet", folder)
    mxnet_backend, numpy_backend = backends.get("mxnet"), backends.get("numpy")
    weights, path = seeded_weights(spec, folder, "float32")
    ours = mxnet_backend.build(spec)
    mxnet_backend.set_weights(ours, weights)
    x = seeded_input(spec.input_shape)
    error32 = relative_error(_run_generated(module, path, x), mxnet_backend.forward(ours, x)[0])
    weights, path = seeded_weights(spec, folder, "float64")
    reference = numpy_backend.build(spec, dtype="float64")
    numpy_backend.set_weights(reference, weights)
    x = seeded_input(spec.input_shape, dtype="float64")
    return error32, relative_error(_run_generated(module, path, x), numpy_backend.forward(reference, x)[0])


def _check(spec, folder):
    error32, error64 = _errors(spec, folder)
    assert error32 <= TOLERANCE["float32"]
    assert error64 <= TOLERANCE["float64"]


@pytest.mark.parametrize("name", NUMERIC)
def test_generated_zoo_model_agrees_with_the_mxnet_backend_and_numpy(name, tmp_path):
    _check(small_spec(name), tmp_path)


@pytest.mark.parametrize("case", sorted(VOCABULARY))
def test_every_node_type_is_generated(case, tmp_path):
    _check(VOCABULARY[case], tmp_path)


def test_the_check_catches_a_wrong_divisor(tmp_path, monkeypatch):
    """Counting the padding in an average pool that must not is caught."""
    from refnets import codegen

    real = codegen.generate
    monkeypatch.setattr("codegen_helpers.generate", lambda spec, framework: real(spec, framework).replace(
        ', count_include_pad=False', ''))
    error32, error64 = _errors(VOCABULARY["AvgPool"], tmp_path)
    assert error32 > TOLERANCE["float32"] and error64 > TOLERANCE["float64"]


def _root_class(module):
    return getattr(module, re.search(r"model = (\w+)\(", inspect.getsource(module.build)).group(1))


@pytest.mark.parametrize("name", refnets.list_models())
def test_every_zoo_model_has_the_canonical_parameters(name, tmp_path):
    """Not initialised (no memory): the structural parameter names, with BatchNorm's
    gamma and beta as weight and bias, and their shapes are the spec's canonical ones."""
    spec = refnets.get_spec(name, input_shape=SMALL.get(name))
    module, _ = write_module(spec, "mxnet", tmp_path)
    params = module.canonical_params(_root_class(module)())
    assert {k: tuple(p.shape) for k, p in params.items()} == {k: tuple(v) for k, v in
                                                              refnets.param_shapes(spec).items()}


def test_generated_source_imports_only_mxnet_numpy_and_the_standard_library():
    allowed = {"json", "mxnet", "mxnet.gluon", "numpy"}
    for name in ("resnet50v2", "googlenet", "lenet"):
        tree = ast.parse(generate(refnets.get_spec(name), "mxnet"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert imported <= allowed, imported


def test_generated_source_uses_only_public_gluon_api():
    """No protected attribute or method (`x._name`): parameters are found through
    block.params, block.prefix and child blocks held as attributes."""
    for name in ("resnet50v2", "googlenet", "densenet121", "lenet"):
        source = generate(refnets.get_spec(name), "mxnet")
        assert not re.findall(r"\._(?!_)\w+", source), (name, re.findall(r"\._(?!_)\w+", source))


def test_blocks_are_classes_and_stages_are_tables():
    for short, deep in (("resnet50", "resnet152"), ("resnet50v2", "resnet152v2")):
        a, b = (generate(refnets.get_spec(n), "mxnet") for n in (short, deep))
        assert len(a.splitlines()) == len(b.splitlines())
        assert "STAGES = {" in b
        blocks = [n.name for n in ast.parse(b).body if isinstance(n, ast.ClassDef) and n.name != "Blocks"]
        assert 2 <= len(blocks) <= 6, blocks
    assert "(Bottleneck, 5, 256)" in generate(refnets.get_spec("resnet50"), "mxnet")


def test_the_code_command_writes_the_module(tmp_path, capsys):
    out = tmp_path / "lenet_gluon.py"
    assert refnets_main(["code", "lenet", "--framework", "mxnet", "--option", "num_classes=7",
                         "--out", str(out)]) == 0
    assert "nn.Dense(num_classes, in_units=84)" in out.read_text()
    assert refnets_main(["code", "lenet", "--framework", "mxnet"]) == 0
    assert capsys.readouterr().out.startswith('"""lenet in MXNet Gluon')
