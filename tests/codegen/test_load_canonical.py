"""Every generated module's `load_canonical` refuses weights that do not fit, naming
the missing name and the wrong shape (in its framework's layout), before it sets any."""

import pytest

import refnets
from codegen_helpers import seeded_weights, small_spec, write_module
from conftest import INSTALLED

# The expected shape of lenet's conv1 in each framework's own layout.
CONV1_SHAPES = {"torch": r"\(6, 1, 5, 5\)", "mxnet": r"\(6, 1, 5, 5\)", "keras": r"\(5, 5, 1, 6\)"}


@pytest.mark.parametrize("framework", [
    pytest.param(f, marks=pytest.mark.skipif(f not in INSTALLED, reason=f"{f} is not installed"))
    for f in CONV1_SHAPES])
def test_load_canonical_refuses_weights_that_do_not_fit(framework, tmp_path):
    spec = small_spec("lenet")
    module, _ = write_module(spec, framework, tmp_path)
    weights, _ = seeded_weights(spec, tmp_path)
    weights.pop("fc3.bias")
    weights["conv1.weight"] = weights["conv1.weight"][:3]
    path = str(tmp_path / "bad.safetensors")
    refnets.weights.save(path, weights)
    with pytest.raises(ValueError, match=rf"missing fc3\.bias.*conv1\.weight: expected {CONV1_SHAPES[framework]}"):
        module.load_canonical(module.build(), path)
