"""Where worker interpreters come from (--python over REFNETS_PYTHON over the config
file, name by name), what that changes (the backend counts as installed, `get`
returns a WorkerBackend), and a worker in another interpreter: the legacy one for
MXNet when this is a modern environment without it."""

import importlib.util
import os
import subprocess
import sys

import pytest
from parity.cli import main
from refnets import backends
from refnets import workers
from refnets.workers import WorkerBackend, WorkerConfigError, config

from worker_helpers import wrapper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No worker configuration from this machine: an empty config home, no env var, cwd tmp_path."""
    monkeypatch.delenv("REFNETS_PYTHON", raising=False)
    monkeypatch.delenv("REFNETS_WORKERS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))
    monkeypatch.chdir(tmp_path)
    config.reset()
    yield tmp_path
    config.reset()


def test_the_command_line_beats_the_environment_beats_the_file(clean, monkeypatch):
    a, b, c = (wrapper(clean, name=n) for n in ("a", "b", "c"))
    (clean / "refnets.toml").write_text('[python]\ntorch = "a"\nnumpy = "a"\nkeras = "a"\n')  # relative: to the file
    monkeypatch.setenv("REFNETS_PYTHON", f"torch={b},numpy={b}")
    config.configure({"numpy": c})
    found = config.interpreters()
    assert {name: i.python for name, i in found.items()} == {"torch": b, "numpy": c, "keras": a}
    assert found["keras"].source == str(clean / "refnets.toml")
    assert found["torch"].source == "REFNETS_PYTHON" and found["numpy"].source == "--python"


def test_the_user_config_file_is_read_when_there_is_none_here(clean):
    python = wrapper(clean, name="py")
    home = clean / "config-home" / "refnets"
    home.mkdir(parents=True)
    (home / "config.toml").write_text(f'[python]\nmxnet = "{python}"\n')
    assert config.interpreters()["mxnet"].python == python
    (home / "config.toml").write_text('[python]\nmxnet = 3\n')
    with pytest.raises(WorkerConfigError, match="config.toml: \\[python\\] must map backend names"):
        config.interpreters()


def test_a_configured_worker_makes_its_backend_installed_and_get_returns_it(clean, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mxnet" else real(name, *a))
    assert not backends.is_installed("mxnet") and "mxnet" not in backends.installed()
    monkeypatch.setenv("REFNETS_PYTHON", f"numpy={sys.executable},mxnet={sys.executable}")
    assert backends.is_installed("mxnet") and "mxnet" in backends.installed()
    remote = backends.get("numpy")
    assert isinstance(remote, WorkerBackend) and remote.python == sys.executable
    assert backends.get("numpy") is remote  # one worker per backend and interpreter, reused


def test_workers_mode_puts_every_backend_in_a_worker_of_this_interpreter(clean):
    config.set_mode("workers")
    assert isinstance(backends.get("numpy"), WorkerBackend)
    assert backends.get("numpy").python == sys.executable
    config.set_mode("in-process")
    assert not isinstance(backends.get("numpy"), WorkerBackend)


def legacy_python():
    """An interpreter of another environment that has mxnet (the legacy CI
    environment, REFNETS_PYTHON's mxnet, or the shared development one), or None."""
    configured = os.environ.get("REFNETS_PYTHON", "")
    candidates = [path for name, _, path in (p.partition("=") for p in configured.split(",")) if name == "mxnet"]
    candidates += [os.path.join(ROOT, ".venv-legacy", "bin", "python"), "/work/main/.venv/bin/python"]
    for path in map(os.path.abspath, candidates):
        if os.path.isfile(path):
            probe = subprocess.run([path, "-c", "import sys, mxnet; print(sys.prefix)"], capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() != sys.prefix:
                return path
    return None


@pytest.mark.skipif(importlib.util.find_spec("mxnet") is not None,
                    reason="mxnet is importable here: this checks a modern environment reaching it in another one")
def test_mxnet_runs_in_the_legacy_interpreter_from_a_modern_one(tmp_path, capsys):
    import json

    import numpy as np

    python = legacy_python()
    if python is None:
        pytest.skip("no interpreter with mxnet (.venv-legacy, or REFNETS_PYTHON=mxnet=...)")
    path = tmp_path / "report.json"
    # numpy beside it only: keras imported into this process before torch's first optimiser
    # crashes a modern environment (TensorFlow's LLVM against triton's), whatever the workers do
    assert main(["lenet", "--backends", "numpy,mxnet", "--python", f"mxnet={python}", "--quiet",
                 "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["comparisons"]["mxnet"]["passed"]
    assert f"numpy {np.__version__}" not in report["versions"]["mxnet worker"]  # its own numpy, not ours
    capsys.readouterr()


def test_the_worker_imports_this_source_tree(clean):
    remote = WorkerBackend("numpy", wrapper(clean), "test")
    try:
        assert remote.hello()["refnets"] == os.path.join(ROOT, "refnets")
    finally:
        remote.close()
    workers.close_all()


@pytest.mark.skipif(not (importlib.util.find_spec("torch") and importlib.util.find_spec("mxnet")),
                    reason="needs torch and mxnet in this environment")
def test_torch_runs_with_its_threads_after_mxnet_took_them_in_one_process():
    """Importing mxnet sets the OpenMP pool torch shares to one thread; the torch
    backend puts it back (OMP_NUM_THREADS, else the usable cores) before it runs."""
    script = ("import numpy as np, refnets, torch, mxnet\n"
              "from refnets import backends\n"
              "from refnets.backends.torch.framework import usable_threads\n"
              "after_import = torch.get_num_threads()\n"
              "b = backends.get('torch'); spec = refnets.get_spec('lenet')\n"
              "b.forward(b.build(spec), np.zeros((1, 1, 28, 28), np.float32))\n"
              "print(after_import, torch.get_num_threads(), usable_threads())\n")
    for omp in (None, "3"):
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env.update({"PYTHONPATH": ROOT, **({"OMP_NUM_THREADS": omp} if omp else {})})
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
        after_import, running, wanted = map(int, out.stdout.split()[-3:])
        assert running == wanted == (int(omp) if omp else len(os.sched_getaffinity(0))), out.stderr[-2000:]
        if omp is None and wanted > 1:
            assert after_import == 1  # what mxnet's import did (if this changes, the fix may go)


def test_pooled_workers_wait_passively_unless_the_user_says_otherwise(monkeypatch):
    """Side by side, spinning OpenMP threads take the cores the other workers need."""
    from refnets.workers import backend as worker_backend

    import sys

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert worker_backend.side_by_side_env() == {"OMP_WAIT_POLICY": "PASSIVE"}
    try:  # nothing is started: a pooled backend only remembers what its process will get
        assert worker_backend.pooled("numpy", sys.executable, "test").env == {"OMP_WAIT_POLICY": "PASSIVE"}
    finally:
        worker_backend.close_all()
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert worker_backend.side_by_side_env() == {}
