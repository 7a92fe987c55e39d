"""A worker that dies (SIGSEGV, SIGKILL, an exit) or hangs past its timeout is that
backend's failure: the report names it with the signal or status and its stderr,
the other backends are still compared and reported, and the run exits 2 (not 1,
the disagreement code). Faults come from a wrapper interpreter with a test-only
sitecustomize (tests/workers/fakes), not from a hook in the product. Bad worker
configuration is a usage error (exit 2) naming the path."""

import json
import sys

import pytest
import refnets
from parity.cli import main
from refnets import backends

from conftest import INSTALLED
from worker_helpers import wrapper

# A second framework beside numpy to show that the others are still compared: the
# quickest to import of those installed (none: numpy alone is compared with the crash).
OTHER = next((b for b in ("mxnet", "keras") if b in INSTALLED), None)
needs_torch = pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")


def run(args, capsys):
    code = main(args + ["--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@needs_torch
@pytest.mark.parametrize("fault, words", [("segv", "killed by SIGSEGV during 'forward'"),
                                          ("kill", "killed by SIGKILL during 'forward'"),
                                          ("exit", "exited with status 7 during 'forward'")])
def test_a_dying_worker_is_that_backends_failure_and_the_others_are_reported(fault, words, tmp_path, capsys):
    chosen = ",".join(["numpy", "torch"] + ([OTHER] if OTHER else []))
    path = tmp_path / "report.json"
    code, out, _ = run(["lenet", "--backends", chosen, "--python", f"torch={wrapper(tmp_path, fault)}",
                        "--json", str(path)], capsys)
    assert code == 2
    assert f"torch: FAILED: the torch worker {words}" in out
    assert "INCOMPLETE: torch failed" in out
    if OTHER:
        assert f"{OTHER} vs numpy" in out and "PASS" in out
    report = json.loads(path.read_text())
    assert words in report["failures"]["torch"] and report["passed"] is False
    assert ("torch" not in report["comparisons"]) and (not OTHER or report["comparisons"][OTHER]["passed"])


@needs_torch
def test_a_hanging_worker_times_out(tmp_path, capsys):
    code, out, _ = run(["lenet", "--backends", "numpy,torch", "--worker-timeout", "3",
                        "--python", f"torch={wrapper(tmp_path, 'hang')}"], capsys)
    assert code == 2
    assert "the torch worker timed out after 3 s during 'forward' (killed)" in out


@needs_torch
@pytest.mark.skipif(OTHER is None, reason="needs a third backend")
def test_when_the_reference_dies_the_next_backend_is_the_reference(tmp_path, capsys):
    code, out, _ = run(["lenet", "--backends", f"torch,numpy,{OTHER}",
                        "--python", f"torch={wrapper(tmp_path, 'segv')}"], capsys)
    assert code == 2
    assert "the reference torch failed: the others are compared with numpy" in out
    assert f"{OTHER} vs numpy" in out
    assert "reference numpy" in out.splitlines()[0]


@needs_torch
@pytest.mark.skipif(OTHER is None, reason="needs a third backend")
def test_with_layers_a_reference_that_dies_while_capturing_is_replaced_and_the_rest_localised(tmp_path, capsys):
    """--layers makes the capturing forwards the forwards: the reference dying in its
    first one leaves the others without a pair. They are compared with the next
    backend and localised against it all the same."""
    path = tmp_path / "report.json"
    code, out, _ = run(["lenet", "--layers", "--backends", f"torch,numpy,{OTHER}", "--json", str(path),
                        "--python", f"torch={wrapper(tmp_path, 'segv')}"], capsys)
    report = json.loads(path.read_text())
    assert code == 2 and "the reference torch failed: the others are compared with numpy" in out
    assert report["comparisons"][OTHER]["passed"]
    localisation = report["comparisons"][OTHER]["localisation"]
    assert localisation["first_divergent"] is None
    assert len(localisation["nodes"]) == len(list(refnets.get_spec("lenet").walk())) - 1


@needs_torch
@pytest.mark.skipif(OTHER is None, reason="needs a third backend")
def test_with_layers_a_backend_that_dies_while_capturing_leaves_the_others_localised(tmp_path, capsys):
    path = tmp_path / "report.json"
    code, out, _ = run(["lenet", "--layers", "--backends", f"numpy,torch,{OTHER}", "--json", str(path),
                        "--python", f"torch={wrapper(tmp_path, 'segv')}"], capsys)
    report = json.loads(path.read_text())
    assert code == 2 and "INCOMPLETE: torch failed" in out
    assert "torch" not in report["comparisons"] and report["comparisons"][OTHER]["passed"]
    assert report["comparisons"][OTHER]["localisation"]["first_divergent"] is None


@needs_torch
def test_a_training_run_ends_with_the_failure_as_an_environment_error(tmp_path, capsys):
    code, _, err = run(["lenet", "--grad", "--backends", "numpy,torch",
                        "--python", f"torch={wrapper(tmp_path, 'segv')}"], capsys)
    assert code == 2
    assert "error: the torch worker killed by SIGSEGV during 'gradients'" in err


def test_every_backend_in_a_worker_reports_what_in_process_reports(tmp_path, capsys):
    chosen = ",".join(["numpy"] + [b for b in ("torch", OTHER) if b in INSTALLED])
    reports = []
    for flag in ("--in-process", "--workers"):
        path = tmp_path / f"{flag}.json"
        assert main(["lenet", "--backends", chosen, "--quiet", flag, "--json", str(path)]) == 0
        reports.append(json.loads(path.read_text()))
    assert reports[0]["comparisons"] == reports[1]["comparisons"]
    assert any(key.endswith(" worker") for key in reports[1]["versions"])
    capsys.readouterr()


@pytest.mark.parametrize("setting, words", [
    ("torch=/no/such/python", "--python: torch=/no/such/python: no such file"),
    ("torch={tmp}/data.txt", "data.txt: not an executable file"),
    ("torch={tmp}/garbage", "cannot start the torch worker with {tmp}/garbage (--python): Exec format error"),
    (f"tensorflow={sys.executable}", "'tensorflow' is not a backend; choose from"),
])
def test_bad_worker_settings_are_usage_errors(setting, words, tmp_path, capsys):
    (tmp_path / "data.txt").write_text("not a program\n")
    (tmp_path / "garbage").write_bytes(b"\x00\x01not a program")
    (tmp_path / "garbage").chmod(0o755)
    code, _, err = run(["lenet", "--backends", "numpy,torch", "--python", setting.format(tmp=tmp_path)], capsys)
    assert code == 2
    assert words.format(tmp=tmp_path) in err


def test_a_python_setting_without_a_path_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["lenet", "--python", "torch"])
    assert exited.value.code == 2 and "give NAME=PATH" in capsys.readouterr().err


def test_a_program_that_is_not_python_is_a_usage_error(capsys):
    code, _, err = run(["lenet", "--backends", "numpy,torch", "--python", "numpy=/bin/true"], capsys)
    assert code == 2
    assert "the numpy worker (/bin/true, --python) did not start: exited with status 0 while starting" in err
    assert "Is it a python interpreter" in err


@needs_torch
@pytest.mark.parametrize("blocked, words", [
    ("safetensors", "cannot import safetensors"),
    ("torch", "backend 'torch' needs torch, which could not be imported"),
])
def test_an_interpreter_without_what_the_worker_needs_is_a_usage_error(blocked, words, tmp_path, capsys):
    python = wrapper(tmp_path, f"block:{blocked}")
    code, _, err = run(["lenet", "--backends", "numpy,torch", "--python", f"torch={python}"], capsys)
    assert code == 2
    assert words in err and python in err


def test_an_environment_setting_that_is_wrong_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("REFNETS_PYTHON", "mxnet=/no/such/python")
    code, _, err = run(["lenet", "--backends", "numpy,torch"], capsys)
    assert code == 2 and "REFNETS_PYTHON: mxnet=/no/such/python: no such file" in err
    monkeypatch.delenv("REFNETS_PYTHON")
    assert backends.get("numpy").name == "numpy"  # the setting is read afresh, not remembered
