"""`python -m parity fuzz` end to end: a small seeded batch through the CLI in every
installed backend (what CI runs), the exit codes, and a disagreement found, shrunk,
saved and answered with exit 1."""

import json
import os
import subprocess
import sys

import pytest

from conftest import INSTALLED
from parity import cli
from parity.fuzz import known
from parity.fuzz.cli import check_args, parser

CI_COUNT = 12  # cases x every installed backend x float64 and float32


def test_a_seeded_batch_agrees_in_every_installed_backend(capsys):
    if not INSTALLED:
        pytest.skip("no framework installed")
    assert cli.main(["fuzz", "--count", str(CI_COUNT), "--seed", "3"]) == 0
    out, err = capsys.readouterr()
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in INSTALLED]
    assert {(r[0], r[1]) for r in rows} == {(b, d) for b in INSTALLED for d in ("float64", "float32")}
    assert all(int(r[2]) + int(r[3]) == CI_COUNT and r[4] == r[5] == "0" for r in rows), out
    assert f"{CI_COUNT} case(s) of seed 3" in out and "0 unexplained" in out
    assert f"fuzz {CI_COUNT}/{CI_COUNT}" in err


@pytest.mark.parametrize("argv, message", [
    (["--count", "0"], "--count must be at least 1"),
    (["--backends", "numpy"], "numpy is the reference"),
    (["--backends", "nosuch"], "unknown backend 'nosuch'"),
    (["--backends", ""], "at least one backend"),
    (["--out", "/no/such/dir"], "not an existing directory"),
])
def test_a_usage_error_is_one_line_and_exit_2(argv, message, capsys):
    assert cli.main(["fuzz"] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_bad_flag_value_is_exit_2():
    assert cli.main(["fuzz", "--dtype", "float16"]) == 2


def test_check_args_defaults_to_the_installed_frameworks():
    assert check_args(parser().parse_args([])) == INSTALLED


@pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")
def test_an_injected_disagreement_is_shrunk_saved_and_exit_1(monkeypatch, tmp_path, capsys):
    from refnets.backends.torch import build
    from torch import nn

    monkeypatch.setitem(build.ACTIVATIONS, "tanh", nn.Hardtanh)  # torch made wrong on tanh
    # Case 0 of seed 1: seven nodes, one of them a tanh.
    argv = ["fuzz", "--count", "1", "--seed", "1", "--backends", "torch", "--dtype", "float64", "--out",
            str(tmp_path)]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "1 unexplained" in out and "UNEXPLAINED" in out
    [saved] = os.listdir(tmp_path)
    assert saved == "torch-float64-seed-1-case-0"
    assert {"spec.json", "weights.safetensors", "input.npy", "reference.npy", "repro_torch.py"} <= set(
        os.listdir(tmp_path / saved))

    # Listed as a known framework bug, the same finding is explained: exit 0.
    def has_tanh(problem, verdict):
        return any(getattr(node, "kind", "") == "tanh" for _, node in problem.model.walk())

    tanh = known.KnownBug("torch-hardtanh", "torch", ("float64",), "tanh computed as a hard tanh", has_tanh,
                          "tests/fuzz (injected)")
    monkeypatch.setattr(known, "KNOWN_BUGS", (tanh,))
    again = tmp_path / "again"
    again.mkdir()
    assert cli.main(argv[:-1] + [str(again)]) == 0
    out = capsys.readouterr().out
    assert "known: torch-hardtanh" in out and "0 unexplained" in out
    with open(again / saved / "verdict.json") as f:
        assert json.load(f)["class"] == "known: torch-hardtanh"


def test_the_fuzz_modules_import_no_framework():
    code = ("import sys, parity.fuzz.cli, parity.fuzz.repro; "
            "print([m for m in ('torch', 'tensorflow', 'keras', 'mxnet') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
