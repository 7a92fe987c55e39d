"""`parity matrix --ray ADDRESS` against a local Ray instance this test starts
(`ray start --head --block` in its own session, its own temp dir and a free port)
and stops (its process group only: `ray stop` would stop every Ray on the machine)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from refnets import backends

pytest.importorskip("ray")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited {proc.returncode}: {proc.stdout.read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"the local Ray head did not listen on {port} within {seconds:g} s")


@pytest.fixture
def ray_head():
    """127.0.0.1:PORT of a one-CPU Ray head, stopped afterwards."""
    port, temp = free_port(), tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    proc = subprocess.Popen([ray, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={temp}", "--block"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        # Our own instance, all in the process group started here: killed at once (on SIGTERM
        # Ray drains for up to 30 s); its files go with the temp dir.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.skipif("torch" not in backends.installed(), reason="torch is not installed")
def test_cells_run_as_ray_tasks_on_a_local_cluster(ray_head, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "parity", "matrix", "--models", "lenet", "--backends", "numpy,torch",
                           "--dtypes", "float64", "--modes", "forward", "--small", "--ray", ray_head,
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"1 to run on Ray at {ray_head}" in proc.stderr
    assert "1/1 done, 0 running, 0 failed: lenet-float64-forward agree" in proc.stderr
    assert "| lenet | agree " in proc.stdout
    with open(out / "matrix.json") as stream:
        document = json.load(stream)
    assert document["settings"]["engine"] == f"ray {ray_head}"
    (cell,) = document["cells"]
    assert cell["outcome"] == "agree" and cell["worst"]["max_rel"] < 1e-12
    assert cell["ran_on"]["pid"] != document["settings"]["driver"]["pid"]  # in a Ray worker, not in the driver


def test_no_cluster_at_the_address_is_a_usage_error_at_once():
    from parity import ParityUsageError
    from parity.matrix import engines

    with pytest.raises(ParityUsageError, match="cannot connect to a Ray cluster there: nothing answers"):
        engines.check_reachable(f"127.0.0.1:{free_port()}")  # Ray itself would retry for minutes


@pytest.mark.slow
@pytest.mark.skipif("torch" not in backends.installed(), reason="torch is not installed")
def test_sigint_during_a_ray_matrix_exits_130_keeping_finished_cells(ray_head, tmp_path):
    out = str(tmp_path / "out")
    proc = subprocess.Popen([sys.executable, "-m", "parity", "matrix", "--models", "lenet,nin,resnet18", "--small",
                             "--backends", "numpy,torch", "--dtypes", "float64", "--modes", "forward,grad",
                             "--ray", ray_head, "--out", out], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not os.path.isdir(os.path.join(out, "cells")) or not os.listdir(os.path.join(out, "cells")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "rerun the same command to resume" in err
    saved = os.listdir(os.path.join(out, "cells"))
    assert 1 <= len(saved) < 6 and not any(name.startswith(".") for name in saved)
