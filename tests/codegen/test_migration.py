"""The verified migration of the issue: a Gluon tutorial model, traced and emitted
as PyTorch source, passes the port check against the Gluon original."""

import pathlib

import pytest

from parity.cli import main as parity_main
from refnets.__main__ import main as refnets_main

from conftest import INSTALLED

GLUON_LENET = pathlib.Path(__file__).resolve().parents[2] / "examples" / "tutorials" / "gluon_lenet.py"


@pytest.mark.skipif(not {"mxnet", "torch"} <= set(INSTALLED), reason="needs mxnet and torch")
def test_a_gluon_tutorial_model_migrates_to_verified_pytorch_source(tmp_path, capsys):
    out = tmp_path / "model_torch.py"
    model = f"{GLUON_LENET}:build"
    assert refnets_main(["code", model, "--from", "mxnet", "--input-shape", "1,28,28", "--framework", "torch",
                         "--out", str(out)]) == 0
    source = out.read_text()
    assert "import refnets" not in source and "mxnet" not in source.split('"""', 2)[2]
    assert parity_main([model, "--from", "mxnet", "--input-shape", "1,28,28", "--port", f"{out}:build",
                        "--port-backend", "torch"]) == 0
    assert "PORT MATCHES THE REFERENCE" in capsys.readouterr().out
    # the check can fail: a wrong layer in the generated source is caught
    out.write_text(source.replace("nn.Linear(500, 10)", "nn.Linear(500, 10, bias=False)"))
    assert parity_main([model, "--from", "mxnet", "--input-shape", "1,28,28", "--port", f"{out}:build",
                        "--port-backend", "torch"]) != 0


@pytest.mark.parametrize("framework", ["keras", "mxnet"])
def test_generated_keras_and_gluon_sources_pass_the_port_check(framework, tmp_path, capsys):
    """LeNet (a channels-last Flatten before a Dense in Keras) generated for the
    framework is a port our checker accepts against the spec, and a wrong layer fails."""
    if framework not in INSTALLED:
        pytest.skip(f"needs {framework}")
    out = tmp_path / f"lenet_{framework}.py"
    assert refnets_main(["code", "lenet", "--framework", framework, "--out", str(out)]) == 0
    args = ["lenet", "--port", f"{out}:build", "--port-backend", framework]
    assert parity_main(args) == 0
    assert "PORT MATCHES THE REFERENCE" in capsys.readouterr().out
    source = out.read_text()
    wrong = source.replace('"sigmoid", name="act3"', '"tanh", name="act3"') if framework == "keras" else \
        source.replace('self.fc2(F.sigmoid(x))', 'self.fc2(F.tanh(x))')
    assert wrong != source
    out.write_text(wrong)
    assert parity_main(args) != 0
