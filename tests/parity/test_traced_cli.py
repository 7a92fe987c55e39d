"""Your own model on the command line: `refnets trace`, `parity MODULE:CALLABLE
--from` (a verified conversion) and a port checked against a port, with the
structural diff of planted differences named before any forward."""

import json
import re
import pathlib

import pytest
from parity.cli import main as parity_main
from refnets import specfile
from refnets.__main__ import main as refnets_main

from conftest import INSTALLED

TUTORIALS = pathlib.Path(__file__).resolve().parents[2] / "examples" / "tutorials"
GLUON_LENET = f"{TUTORIALS / 'gluon_lenet.py'}:build"
needs = pytest.mark.skipif(not {"torch", "mxnet"} <= set(INSTALLED), reason="needs torch and mxnet")

TORCH_LENET = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
                         nn.Conv2d(20, 50, KERNEL, padding=PAD), nn.ReLU(), nn.MaxPool2d(2, 2),
                         nn.Flatten(), nn.Linear(FEATURES, 500), RELU nn.Linear(500, 10))
'''


def torch_port(tmp_path, kernel=5, pad=0, relu=True) -> str:
    features = 50 * (((28 - 4) // 2 - kernel + 1 + 2 * pad) // 2) ** 2
    text = TORCH_LENET.replace("KERNEL", str(kernel)).replace("PAD", str(pad)).replace("FEATURES", str(features))
    path = tmp_path / f"torch_lenet_{kernel}_{int(relu)}.py"
    path.write_text(text.replace("RELU", "nn.ReLU()," if relu else ""))
    return f"{path}:build"


@needs
def test_trace_writes_a_spec_file_and_weights_that_parity_runs(tmp_path, capsys):
    spec_path, weights_path = tmp_path / "lenet.json", tmp_path / "lenet.safetensors"
    assert refnets_main(["trace", GLUON_LENET, "--from", "mxnet", "--input-shape", "1,28,28",
                         "--out", str(spec_path), "--weights", str(weights_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert specfile.load(str(spec_path)).input_shape == (1, 28, 28)
    assert parity_main([str(spec_path), "--weights", str(weights_path), "--backends", "torch,mxnet", "--quiet"]) == 0
    assert refnets_main(["summary", GLUON_LENET, "--from", "mxnet", "--input-shape", "1,28,28"]) == 0
    assert "Total params: 431,080" in capsys.readouterr().out


@needs
def test_a_verified_conversion_compares_every_backend_with_your_model(tmp_path, capsys):
    report = tmp_path / "run.json"
    code = parity_main([GLUON_LENET, "--from", "mxnet", "--input-shape", "1,28,28", "--backends", "torch,mxnet",
                        "--layers", "--quiet", "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "torch vs yours" in out and "mxnet vs yours" in out and "per node against the spec built in mxnet" in out
    data = json.loads(report.read_text())
    assert data["reference"] == "yours" and data["native"].endswith("(mxnet)")
    assert all(c["max_rel"] <= 1e-5 for c in data["comparisons"].values())


@needs
def test_gradients_of_your_model_across_backends():
    assert parity_main([GLUON_LENET, "--from", "mxnet", "--input-shape", "1,28,28", "--backends", "torch,numpy",
                        "--grad", "--batch", "2", "--quiet"]) == 0


@needs
def test_usage_errors_exit_2_with_their_message(tmp_path, capsys):
    assert parity_main([GLUON_LENET, "--quiet"]) == 2
    assert "--from" in capsys.readouterr().err
    bad = tmp_path / "gelu.py"
    bad.write_text("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
                   "        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n\n    def forward(self, x):\n"
                   "        return nn.functional.gelu(self.conv(x))\n\n\ndef build():\n    return Net()\n")
    assert parity_main([f"{bad}:build", "--from", "torch", "--input-shape", "3,8,8", "--quiet"]) == 2
    assert "gelu" in capsys.readouterr().err
    assert parity_main([f"{bad}:build", "--from", "torch", "--quiet"]) == 2
    assert "--input-shape" in capsys.readouterr().err


@needs
def test_a_port_against_a_port_matches(tmp_path, capsys):
    code = parity_main([GLUON_LENET, "--from", "mxnet", "--input-shape", "1,28,28", "--port", torch_port(tmp_path),
                        "--port-backend", "torch", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "reproduces it to max rel" in out and "matches the reference node for node" in out


@needs
def test_a_missing_relu_in_the_port_is_named_before_the_forward_and_the_run_goes_on(tmp_path, capsys):
    code = parity_main([GLUON_LENET, "--from", "mxnet", "--input-shape", "1,28,28",
                        "--port", torch_port(tmp_path, relu=False), "--port-backend", "torch", "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"no ReLU after dense\d+_fwd in the port", out), out  # Gluon numbers its layers per process
    assert "port vs mxnet" in out  # copyable: the numbers are shown too
    assert "diagnosis (missing_activation): a missing activation: the port has no relu" in out


@needs
def test_a_kernel_size_difference_stops_after_the_diff(tmp_path, capsys):
    code = parity_main([GLUON_LENET, "--from", "mxnet", "--input-shape", "1,28,28",
                        "--port", torch_port(tmp_path, kernel=3, pad=0), "--port-backend", "torch", "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    assert "kernel 5x5 vs 3x3" in out and "cannot be copied onto the port: no forward pass" in out


CONCAT = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(torch.cat([ORDER], dim=1)).mean((2, 3))


def build():
    return Net()
"""


@needs
def test_a_concat_order_the_structure_cannot_show_is_found_by_the_numbers(tmp_path, capsys):
    paths = {}
    for name, order in (("ref", "self.a(x), self.b(x)"), ("port", "self.b(x), self.a(x)")):
        paths[name] = tmp_path / f"{name}.py"
        paths[name].write_text(CONCAT.replace("ORDER", order))
    code = parity_main([f"{paths['ref']}:build", "--from", "torch", "--input-shape", "3,8,8",
                        "--port", f"{paths['port']}:build", "--port-backend", "torch", "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    assert "diagnosis (concat_order)" in out and "in the order 1, 0" in out, out
