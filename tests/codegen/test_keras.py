"""Generated Keras source: for the zoo and for every node type of the vocabulary,
the generated module builds a channels-last keras.Model, loads seeded canonical
weights by name (converting the layouts itself) and agrees with our keras backend
within the float32 bar and with the numpy reference within the float64 bar; it
imports only keras, numpy and the standard library, is ruff-format-clean and
lint-clean, writes repeated blocks as functions and stages as tables, and leaves
the input's height and width free where the architecture allows."""

import ast
import re

import numpy as np
import pytest

import refnets
from refnets import backends
from refnets import spec as S
from refnets.__main__ import main as refnets_main
from refnets.codegen import generate

from conftest import INSTALLED, TOLERANCE, relative_error, seeded_input
from codegen_helpers import SMALL, VOCABULARY, seeded_weights, small_spec, write_module


pytestmark = pytest.mark.skipif("keras" not in INSTALLED, reason="keras is not installed")

# Run end to end (the other models are checked structurally below: their blocks
# are these models' kinds, and VGG's and AlexNet's 100M-parameter classifiers add
# a minute each).
NUMERIC = ["lenet", "nin", "googlenet", "densenet121", "mnist_googlenet", "mnist_resnet", "resnet18v2", "resnet50v2"]


def _keras():
    import keras

    return keras


def _floatx(dtype: str) -> None:
    """Layers built from now on compute in `dtype` (the generated code, like
    keras.applications, takes Keras's global setting)."""
    keras = _keras()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)


def _run_generated(module, weights_path, x, dtype="float32"):
    """The generated model on NCHW input `x`, output back in NCHW where it is a map."""
    _floatx(dtype)
    try:
        model = module.load_canonical(module.build(), weights_path)
        out = np.asarray(model(np.transpose(x, (0, 2, 3, 1))))
    finally:
        _floatx("float32")
    return np.transpose(out, (0, 3, 1, 2)) if out.ndim == 4 else out


def _errors(spec, folder):
    """(float32 error against the keras backend, float64 error against numpy)."""
    module, _ = write_module(spec, "keras", folder)
    keras_backend, numpy_backend = backends.get("keras"), backends.get("numpy")
    weights, path = seeded_weights(spec, folder, "float32")
    ours = keras_backend.build(spec)
    keras_backend.set_weights(ours, weights)
    x = seeded_input(spec.input_shape)
    error32 = relative_error(_run_generated(module, path, x), keras_backend.forward(ours, x)[0])
    weights, path = seeded_weights(spec, folder, "float64")
    reference = numpy_backend.build(spec, dtype="float64")
    numpy_backend.set_weights(reference, weights)
    x = seeded_input(spec.input_shape, dtype="float64")
    error64 = relative_error(_run_generated(module, path, x, "float64"), numpy_backend.forward(reference, x)[0])
    return error32, error64


def _check(spec, tmp_path):
    error32, error64 = _errors(spec, tmp_path)
    assert error32 <= TOLERANCE["float32"]
    assert error64 <= TOLERANCE["float64"]


@pytest.mark.parametrize("name", NUMERIC)
def test_generated_zoo_model_agrees_with_the_keras_backend_and_numpy(name, tmp_path):
    _check(small_spec(name), tmp_path)


@pytest.mark.parametrize("case", sorted(VOCABULARY))
def test_every_node_type_is_generated(case, tmp_path):
    _check(VOCABULARY[case], tmp_path)


def test_the_check_catches_a_dense_without_the_flatten_reorder(tmp_path, monkeypatch):
    """LeNet's fc1 takes a channels-last Flatten: loaded without reordering its
    canonical C, H, W columns (an empty FLATTENED), the model disagrees."""
    from refnets import codegen

    real = codegen.generate
    monkeypatch.setattr("codegen_helpers.generate", lambda spec, framework: re.sub(
        r"FLATTENED = \{.*\}", "FLATTENED = {}", real(spec, framework)))
    error32, error64 = _errors(small_spec("lenet"), tmp_path)
    assert error32 > TOLERANCE["float32"] and error64 > TOLERANCE["float64"]


def _canonical_shape(shape, kind):
    shape = tuple(int(s) for s in shape)
    if kind == "conv" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return shape[::-1] if kind == "dense" else shape


@pytest.mark.parametrize("name", [n for n in refnets.list_models() if n not in NUMERIC])
def test_every_zoo_model_has_the_canonical_parameters(name, tmp_path):
    """Built in a stateless scope (no variable is allocated): the layers' names
    and roles are the canonical names, and their shapes in the canonical layout the
    canonical shapes, so weights map by name."""
    keras = _keras()
    spec = refnets.get_spec(name, input_shape=SMALL.get(name))
    module, _ = write_module(spec, "keras", tmp_path)
    with keras.StatelessScope():
        model = module.build()
    slots = module.parameter_slots(model)
    shapes = {k: _canonical_shape(var.shape, kind) for k, (var, kind, _) in slots.items()}
    assert shapes == {k: tuple(v) for k, v in refnets.param_shapes(spec).items()}


def test_the_input_size_is_free_where_the_architecture_allows(tmp_path):
    """ResNet and DenseNet take any height and width; a Flatten before a Dense (LeNet)
    fixes the size at the spec's."""
    keras = _keras()
    for name, size in (("resnet18", (None, None, 3)), ("densenet121", (None, None, 3)), ("lenet", (28, 28, 1))):
        module, _ = write_module(refnets.get_spec(name, input_shape=SMALL.get(name)), "keras", tmp_path)
        with keras.StatelessScope():
            model = module.build()
        assert tuple(model.input_shape[1:]) == size, name
    module, _ = write_module(small_spec("resnet18"), "keras", tmp_path)
    model = module.build(num_classes=4)
    for hw in ((32, 32), (45, 37)):
        assert model(np.zeros((1,) + hw + (3,), np.float32)).shape == (1, 4)


def test_generated_source_imports_only_keras_numpy_and_the_standard_library():
    allowed = {"json", "keras", "numpy"}
    for name in ("resnet50v2", "googlenet", "lenet"):
        tree = ast.parse(generate(refnets.get_spec(name), "keras"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert imported <= allowed, imported


def test_blocks_are_functions_and_stages_are_tables():
    """A deeper variant adds table rows' counts, not code: resnet152 is as long as
    resnet50, and its blocks are a handful of functions."""
    for short, deep in (("resnet50", "resnet152"), ("resnet50v2", "resnet152v2")):
        a, b = (generate(refnets.get_spec(n), "keras") for n in (short, deep))
        assert len(a.splitlines()) == len(b.splitlines())
        assert "STAGES = {" in b
        functions = [n.name for n in ast.parse(b).body if isinstance(n, ast.FunctionDef)]
        blocks = [f for f in functions if f in b.split("STAGES = {")[1].split("}")[0]]
        assert 2 <= len(blocks) <= 6, functions
    source = generate(refnets.get_spec("resnet50"), "keras")
    assert "(bottleneck, 5, 256)" in source  # layer3: the five blocks after the projecting one


def test_the_code_command_writes_the_module(tmp_path, capsys):
    out = tmp_path / "lenet_keras.py"
    assert refnets_main(["code", "lenet", "--framework", "keras", "--option", "num_classes=7",
                         "--out", str(out)]) == 0
    assert 'layers.Dense(num_classes, name="fc3")' in out.read_text()
    assert "num_classes=7" in out.read_text()
    assert refnets_main(["code", "lenet", "--framework", "keras"]) == 0
    assert capsys.readouterr().out.startswith('"""lenet in Keras')


def _reuse_spec():
    def block(name):
        return S.Sequential(name=name, children=(S.Conv2d(name="conv", out_channels=4, kernel=(3, 3),
                                                          padding=(1, 1, 1, 1)), S.Activation(name="act")))
    return S.ModelSpec(name="reuse", input_shape=(4, 8, 8), root=S.Sequential(children=(
        block("b1"), block("b2"), block("b3"), S.Shared(name="again", target="b1.conv"))))


def test_a_layer_shared_across_blocks_is_one_layer_object_called_twice(tmp_path):
    """The block holding the shared layer is written inline in the builder (its
    function would create the layer where the other call cannot reach it), the
    others stay block calls; the layer object is called twice, its weights once."""
    spec = _reuse_spec()
    source = generate(spec, "keras")
    assert "conv_layer = layers.Conv2D(" in source and "x = conv_layer(x)" in source
    assert 'name="b2")' in source and 'name="b3")' in source  # the other blocks are calls of one function
    _check(spec, tmp_path)
    keras = _keras()
    module, _ = write_module(spec, "keras", tmp_path)
    with keras.StatelessScope():
        model = module.build()
    assert sorted(module.parameter_slots(model)) == ["b1.conv.bias", "b1.conv.weight", "b2.conv.bias",
                                                     "b2.conv.weight", "b3.conv.bias", "b3.conv.weight"]
