"""Exit codes of `python -m parity` (see refnets.exits): 2 for every bad input,
before any work where it can be told then; 3 for a bug, one line; 130 on Ctrl-C
with no half-written file. In-process and cheap: lenet, refusals before any
backend is imported or any array allocated."""

import dataclasses
import os
import sys
import types

import numpy as np
import pytest

import parity.cli as cli
from refnets import backends as B
from refnets import weights as W
from refnets.backends import catalog

from conftest import INSTALLED

NEEDS_TORCH = pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")


@pytest.fixture
def no_run(monkeypatch):
    """Any comparison actually starting is a failure of the test (exit 3, not 2)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the run started")

    for name in ("run", "run_against", "run_port", "run_traced", "run_grad", "run_train", "run_train_steps"):
        monkeypatch.setattr(cli, name, refuse)


def parity(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--rtol", "-1"], "--rtol must be a finite number >= 0, got -1.0"),
    (["--rtol", "nan"], "--rtol must be a finite number >= 0, got nan"),
    (["--atol", "inf"], "--atol must be a finite number >= 0, got inf"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--seed", "-5"], "--seed must be >= 0"),
    (["--train-steps", "0"], "--train-steps must be a positive integer"),
    (["--train-steps", "2", "--lr", "nan"], "--lr must be a finite number > 0"),
    (["--train-steps", "2", "--lr", "inf"], "--lr must be a finite number > 0"),
    (["--train-steps", "2", "--optimizer", "momentum", "--momentum", "1.5"], "--momentum must be a finite number >= 0 and < 1"),
    (["--worker-timeout", "0"], "worker timeout is a number of seconds > 0"),
    (["--json", "/nonexistent-dir/r.json"], "--json /nonexistent-dir/r.json: the directory /nonexistent-dir does not exist"),
    (["--save-weights", "/nonexistent-dir/w.npz"], "the directory /nonexistent-dir does not exist"),
    (["--save-weights", "w.bin"], "must end in .safetensors or .npz"),
    (["--backends", "numpy,nosuch"], "nosuch"),
    (["--backends", ","], "--backends names no backend"),
    (["--input-shape", "1,4,4"], "input too small"),
    (["--option", "nosuch=1"], "nosuch"),
])
def test_bad_numbers_flags_and_paths_exit_2_before_the_run(capsys, no_run, argv, message):
    backends = [] if "--backends" in argv else ["--backends", "numpy,torch"]
    code, err = parity(capsys, "lenet", *backends, *argv)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_json_into_a_directory_exits_2(capsys, no_run, tmp_path):
    code, err = parity(capsys, "lenet", "--backends", "numpy,torch", "--json", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_library_tolerance_is_checked_too():
    from parity.engine.config import ParityUsageError, resolve_tolerance

    with pytest.raises(ParityUsageError, match="rtol must be a finite number"):
        resolve_tolerance((1e-5, 1e-6), float("nan"), None)


@pytest.mark.parametrize("argv", [
    ["lenet", "--input-shape", "1,100000,100000"],
    ["vgg16", "--batch", "100000"],
    ["lenet", "--batch", "10000000", "--grad"],
])
def test_a_run_too_large_for_memory_is_refused_before_allocating(capsys, no_run, monkeypatch, argv):
    monkeypatch.setattr(W, "init", lambda *a, **k: pytest.fail("weights were allocated"))
    code, err = parity(capsys, *argv, "--backends", "numpy,torch")
    assert code == 2, err
    assert "needs at least" in err and "is available" in err and "PARITY_SKIP_MEMORY_CHECK=1" in err


def test_memory_estimate_and_its_override(monkeypatch):
    from parity.engine import preflight
    from parity.engine.config import ParityUsageError
    from refnets import registry

    spec = registry.get_spec("lenet")
    small = preflight.estimate(spec, 2, "float32", 2)
    assert small.weights == 4 * sum(v.size for v in W.init(spec).values())
    assert small.required < 10 * 2 ** 20  # lenet fits anywhere
    kept = preflight.estimate(spec, 2, "float32", 2, kept=2)
    assert kept.required == small.required - small.peak_activation + 2 * kept.activations > small.required
    with pytest.raises(ParityUsageError, match="needs at least"):
        preflight.check_memory(spec, 2, "float32", ["a", "b"], 0, available=1000)
    available = preflight.available_bytes()
    assert available is None or available > 0
    monkeypatch.setenv(preflight.SKIP_MEMORY_ENV, "1")
    preflight.check_memory(spec, 2, "float32", ["a", "b"], 0, available=1000)


@pytest.mark.parametrize("content, message", [
    ('{"format": "refnets-spec", "version": 1, "model": {', "not JSON"),
    ("not json at all", "not JSON"),
    ('{"format": "refnets-spec", "version": 1, "name": "x"}', "model.json"),
])
def test_a_malformed_spec_file_exits_2(capsys, no_run, tmp_path, content, message):
    path = tmp_path / "model.json"
    path.write_text(content)
    code, err = parity(capsys, str(path), "--backends", "numpy,torch")
    assert code == 2 and message in err and "Traceback" not in err


def test_weights_of_another_model_or_garbage_exit_2(capsys, tmp_path):
    other = tmp_path / "other.npz"
    W.save(str(other), {"fc.weight": np.zeros((3, 3), np.float32)})
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a weight file" * 10)
    for path, message in ((other, "fc.weight"), (garbage, "not a readable weight file"),
                          (tmp_path / "missing.npz", "no such weight file")):
        code, err = parity(capsys, "lenet", "--backends", "numpy,torch", "--weights", str(path))
        assert code == 2 and message in err, err


def test_a_missing_framework_exits_2_with_the_install_command(capsys, monkeypatch):
    record = catalog.BACKENDS["torch"]
    monkeypatch.setitem(catalog.BACKENDS, "torch", dataclasses.replace(record, package="refnets.backends.no_such"))
    monkeypatch.setattr(B, "_LOADED", {})
    code, err = parity(capsys, "lenet", "--backends", "numpy,torch", "--in-process")
    assert code == 2 and "could not be imported" in err and record.install in err


def test_an_internal_error_is_one_line_exit_3_and_debug_shows_the_traceback(capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise TypeError("boom")

    monkeypatch.setattr(cli, "run", bug)
    code, err = parity(capsys, "lenet", "--backends", "numpy,torch")
    assert code == 3
    assert err.strip() == ("parity: internal error, a bug in parity (please report it): TypeError: boom; run again "
                           "with --debug (or PARITY_DEBUG=1) to see the traceback")
    code, err = parity(capsys, "lenet", "--backends", "numpy,torch", "--debug")
    assert code == 3 and "Traceback" in err and "the traceback is above" in err
    monkeypatch.setenv("PARITY_DEBUG", "1")
    assert parity(capsys, "lenet", "--backends", "numpy,torch")[0] == 3


def test_a_subcommand_gets_the_same_exit_codes(capsys, monkeypatch):
    def sub_main(argv):
        raise {"bug": KeyError("x"), "ctrl-c": KeyboardInterrupt(), "usage": cli.ParityUsageError("bad"),
               "pipe": BrokenPipeError(), "memory": MemoryError()}[argv[0]]

    monkeypatch.setitem(sys.modules, "fake_sub", types.SimpleNamespace(main=sub_main))
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", "fake_sub")
    assert parity(capsys, "fake", "bug")[0] == 3
    assert parity(capsys, "fake", "ctrl-c")[0] == 130
    code, err = parity(capsys, "fake", "usage")
    assert code == 2 and err.strip() == "error: bad"
    assert parity(capsys, "fake", "pipe") == (141, "")
    code, err = parity(capsys, "fake", "memory")
    assert code == 2 and "out of memory" in err


def test_argparse_errors_stay_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["lenet", "--rtol", "abc"])
    assert info.value.code == 2


def test_ctrl_c_while_writing_exits_130_and_leaves_no_file(capsys, monkeypatch, tmp_path):
    import refnets.fileio as fileio

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "fsync", interrupted)  # the weights are written before any backend runs
    code, err = parity(capsys, "lenet", "--backends", "numpy,torch", "--save-weights", str(tmp_path / "w.npz"))
    assert code == 130 and "interrupted" in err
    assert os.listdir(tmp_path) == []


def test_ctrl_c_during_the_run_exits_130(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run", interrupted)
    assert parity(capsys, "lenet", "--backends", "numpy,torch")[0] == 130


USER_CODE = '''
def raises():
    return helper()


def helper():
    raise RuntimeError("my model is broken")
'''


def test_a_users_code_that_raises_is_named_with_its_file_and_line(tmp_path):
    from refnets.userload import UserCodeError, load_model

    path = tmp_path / "mymodel.py"
    path.write_text(USER_CODE)
    adapter = types.SimpleNamespace(is_model=lambda model: False)
    with pytest.raises(UserCodeError, match=rf"RuntimeError: my model is broken \(at {path}:7 in helper: "):
        load_model(f"{path}:raises", adapter)
    broken = tmp_path / "broken.py"
    broken.write_text("def build(:\n    pass\n")
    with pytest.raises(UserCodeError, match=rf"SyntaxError: .* \(at {broken}:1\)"):
        load_model(f"{broken}:build", adapter)
    with pytest.raises(UserCodeError, match="no file"):
        load_model(f"{tmp_path / 'missing.py'}:build", adapter)


@pytest.mark.slow  # imports torch's tracer (~10 s); the unit test above covers the message
@NEEDS_TORCH
def test_parity_from_a_users_model_that_raises_exits_2_naming_its_line(capsys, tmp_path):
    path = tmp_path / "mymodel.py"
    path.write_text(USER_CODE)
    code, err = parity(capsys, f"{path}:raises", "--from", "torch", "--input-shape", "1,8,8", "--quiet")
    assert code == 2, err
    assert f"at {path}:7 in helper" in err and "Traceback" not in err
