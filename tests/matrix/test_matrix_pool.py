"""`python -m parity matrix` over the local process pool: the table and the JSON,
resume after an interruption, a failed cell, bad arguments. Tiny cells (lenet at
its small input, float64, numpy and torch) so that each run costs a spawn and a
torch import."""

import json
import os
import shutil

import pytest

from parity.cli import main as parity_main
from parity.matrix import cells, cli, store
from refnets import backends

needs_torch = pytest.mark.skipif("torch" not in backends.installed(), reason="torch is not installed")
TINY = ["--models", "lenet", "--backends", "numpy,torch", "--dtypes", "float64", "--small"]


def matrix(*argv):
    return parity_main(["matrix", *argv])


def read(path):
    with open(path) as stream:
        return json.load(stream)


@needs_torch
def test_pool_interrupted_then_resumed_writes_the_table_and_json(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "out")
    argv = [*TINY, "--modes", "forward,grad", "--workers", "1", "--out", out]
    save = store.save_cell

    def save_then_interrupt(directory, record):
        save(directory, record)
        raise KeyboardInterrupt  # Ctrl-C just after the first cell is saved

    monkeypatch.setattr(store, "save_cell", save_then_interrupt)
    assert matrix(*argv) == 130
    captured = capsys.readouterr()
    assert "rerun the same command to resume" in captured.err
    assert sorted(os.listdir(os.path.join(out, "cells"))) == ["lenet-float64-forward.json"]  # no temp file left
    assert not os.path.exists(os.path.join(out, "matrix.json"))  # no table of a partial run
    first = read(store.cell_path(out, "lenet-float64-forward"))

    monkeypatch.setattr(store, "save_cell", save)
    assert matrix(*argv) == 0
    captured = capsys.readouterr()
    assert "2 cells, 1 done before with the same settings (skipped), 1 to run in a pool of 1" in captured.err
    assert "1/1 done, 0 running, 0 failed: lenet-float64-grad agree" in captured.err
    assert "| lenet | agree " in captured.out and "float64 forward | float64 grad |" in captured.out
    assert "matrix: 2 cells (1 done before, skipped): 2 agree, 0 disagree, 0 failed" in captured.out
    assert (tmp_path / "out" / "matrix.md").read_text() == captured.out
    assert read(store.cell_path(out, "lenet-float64-forward")) == first  # not run again
    document = read(os.path.join(out, "matrix.json"))
    assert document["summary"]["agree"] == 2 and document["summary"]["exit_code"] == 0
    by_key = {c["key"]: c for c in document["cells"]}
    assert list(by_key) == ["lenet-float64-forward", "lenet-float64-grad"] and by_key["lenet-float64-forward"] == first
    forward, grad = by_key["lenet-float64-forward"], by_key["lenet-float64-grad"]
    assert forward["worst"]["backend"] == "torch" and 0 <= forward["worst"]["max_rel"] < 1e-12
    assert forward["batch"] == 2 and grad["batch"] == 8 and forward["input_shape"] == [1, 28, 28]
    assert grad["result"]["mode"] == "grad" and grad["seconds"] > 0 and grad["worst"]["max_rel"] < 1e-12
    assert read(store.cell_path(out, "lenet-float64-grad")) == grad


def test_other_settings_or_a_failed_cell_are_not_skipped(tmp_path):
    out = str(store.prepare(str(tmp_path / "out")))
    plan = lambda seed: cells.make_cell("lenet", "float64", "forward", ["numpy", "torch"], 2, seed, None, None, {})
    agreed = {**cells.failed_record(plan(0), "x"), "outcome": "agree"}
    store.save_cell(out, agreed)
    assert set(store.done_before(out, [plan(0)])) == {"lenet-float64-forward"}
    assert store.done_before(out, [plan(1)]) == {}  # another seed: another settings hash
    store.save_cell(out, cells.failed_record(plan(0), "its worker died"))
    assert store.done_before(out, [plan(0)]) == {}
    with open(store.cell_path(out, "lenet-float64-forward"), "w") as stream:
        stream.write('{"truncated": ')
    assert store.done_before(out, [plan(0)]) == {}


def test_an_interrupted_save_leaves_the_old_cell_file_and_no_temporary(tmp_path, monkeypatch):
    out = store.prepare(str(tmp_path / "out"))
    cell = cells.make_cell("lenet", "float64", "forward", ["numpy", "torch"], 2, 0, None, None, {})
    store.save_cell(out, cells.failed_record(cell, "old"))

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.save_cell(out, cells.failed_record(cell, "new"))
    assert os.listdir(os.path.join(out, "cells")) == ["lenet-float64-forward.json"]
    assert read(store.cell_path(out, "lenet-float64-forward"))["error"] == "old"


def test_a_cell_that_cannot_run_is_failed_not_a_verdict(tmp_path, capsys):
    out = tmp_path / "out"
    false = shutil.which("false")
    argv = [*TINY, "--modes", "forward", "--workers", "1", "--python", f"numpy={false}", "--out", str(out)]
    assert matrix(*argv) == 2
    captured = capsys.readouterr()
    assert "| lenet | FAILED |" in captured.out and "- lenet-float64-forward: WorkerConfigError" in captured.out
    assert "1/1 done, 0 running, 1 failed" in captured.err
    record = read(store.cell_path(str(out), "lenet-float64-forward"))
    assert record["outcome"] == "failed" and record["worst"] is None and "did not start" in record["error"]
    assert matrix(*argv) == 2  # a failed cell is run again, not skipped
    assert "0 done before" in capsys.readouterr().err


def test_a_cell_whose_model_cannot_run_is_reported_with_the_reason():
    cell = cells.make_cell("lenet", "float64", "forward", ["numpy", "torch"], 2, 0, (1, 4, 4), "in-process", {})
    record = cells.run_cell(cell)  # in this process: the input is refused before any framework is imported
    assert record["outcome"] == "failed" and record["exit_code"] == 2
    assert record["error"].startswith("InputTooSmallError")


@pytest.mark.parametrize("argv, message", [
    (["--models", "lenett"], "unknown model 'lenett'; did you mean lenet"),
    (["--dtypes", "float16"], "--dtypes: float16; choose from float32, float64"),
    (["--modes", "forward,steps"], "--modes: steps; choose from forward, grad, train"),
    (["--modes", ","], "--modes: none given"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--backends", "torch,torch"], "backend listed twice"),
    (["--backends", "numpy,caffe"], "unknown backend 'caffe'"),
    (["--backends", "numpy"], "parity needs at least two backends"),
    (["--python", "numpy=/no/such/python"], "no such file"),
    (["--out", "/no/such/dir/out"], "its parent directory /no/such/dir does not exist"),
])
def test_bad_arguments_are_usage_errors_before_anything_runs(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(cli.engines, "run_pool", lambda *a: pytest.fail("ran cells"))
    full = ["--models", "lenet", "--backends", "numpy,torch"] + argv
    assert matrix(*full) == 2
    assert message in capsys.readouterr().err


def test_flags_argparse_refuses_are_exit_2(capsys):
    assert matrix("--workers", "2", "--ray", "auto") == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert matrix("--workers", "two") == 2


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert matrix("--models", "lenet", "--backends", "numpy,torch", "--out", str(tmp_path / "f")) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


def test_ray_missing_names_the_extra(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert matrix("--models", "lenet", "--backends", "numpy,torch", "--ray", "auto", "--out", str(tmp_path / "o")) == 2
    assert "pip install 'refnets[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@needs_torch
def test_sigint_to_the_parent_stops_the_pool_and_exits_130(tmp_path):
    """A real Ctrl-C (SIGINT to the parent alone, as `kill -INT` sends it): the pool
    processes are stopped, the finished cells stay, nothing is half-written."""
    import glob
    import signal
    import subprocess
    import sys
    import time

    out = str(tmp_path / "out")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "parity", "matrix", *TINY, "--models", "lenet,nin,resnet18",
                             "--modes", "forward,grad", "--workers", "1", "--out", out],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not glob.glob(os.path.join(out, "cells", "*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "rerun the same command to resume" in err
    saved = os.listdir(os.path.join(out, "cells"))
    assert 1 <= len(saved) < 6 and all(name.endswith(".json") and not name.startswith(".") for name in saved)
    for name in saved:
        assert read(os.path.join(out, "cells", name))["outcome"] == "agree"
