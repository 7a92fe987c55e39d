"""`WorkerBackend.stream`: the worker's stream, one message per node. The nodes and
their order are those of a capturing forward; a sink that sleeps or blocks holds
the worker back through the pipe (it does not write more than a pipe's worth past
the node the sink holds); errors in the worker come back as a forward's do; an
exception in the parent's sink leaves the worker usable; a worker that dies or
hangs mid-stream is a BackendFailure. The numpy backend in the worker: no
framework to import, so each worker starts in well under a second."""

import fcntl
import importlib
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import refnets
from parity.engine.localise import capture_paths
from refnets.backends import catalog
from refnets.workers import BackendFailure, WorkerBackend, WorkerError

from conftest import seeded_input
from worker_helpers import wrapper

LENET = refnets.get_spec("lenet")
PATHS = capture_paths(LENET)
F_GETPIPE_SZ = 1032  # fcntl's, Linux


@pytest.fixture(scope="module")
def remote():
    backend = WorkerBackend("numpy", sys.executable, "test")
    yield backend
    backend.close()


def lenet_input(batch=4):
    return seeded_input(LENET.input_shape, batch=batch, dtype="float64")


def collect(backend, net, x, capture=PATHS, wait=0.0):
    """(output, [(path, array)]) of a stream whose sink keeps every node, sleeping `wait` s on each."""
    got = []

    def sink(path, activation):
        time.sleep(wait)
        got.append((path, activation))

    return backend.stream(net, x, capture, sink), got


def test_the_nodes_are_the_capturing_forwards_in_its_order(remote):
    net, x = remote.build(LENET, dtype="float64"), lenet_input()
    out, acts = remote.forward(net, x, capture=PATHS)
    streamed, got = collect(remote, net, x, capture=PATHS + PATHS[:3])  # repeated paths: once each
    np.testing.assert_array_equal(streamed, out)
    assert [path for path, _ in got] == list(acts) == PATHS
    for path, activation in got:
        assert activation.dtype == acts[path].dtype and activation.shape == acts[path].shape, path
        np.testing.assert_array_equal(activation, acts[path], err_msg=path)
    local = importlib.import_module(catalog.BACKENDS["numpy"].package).BACKEND
    here = []
    local_net = local.build(LENET, dtype="float64")
    local.set_weights(local_net, remote.get_weights(net))
    local.stream(local_net, x, PATHS, lambda path, activation: here.append(path))
    assert here == PATHS  # the order of the same backend in this process


def test_a_slow_sink_gets_every_node_and_its_time_is_not_the_workers(remote):
    net, x = remote.build(LENET, dtype="float64"), lenet_input()
    out, acts = remote.forward(net, x, capture=PATHS)
    remote.timeout = 0.5  # the sink's 12 x 0.1 s are not counted against the worker
    try:
        streamed, got = collect(remote, net, x, wait=0.1)
    finally:
        remote.timeout = None
    np.testing.assert_array_equal(streamed, out)
    assert [path for path, _ in got] == PATHS
    for path, activation in got:
        np.testing.assert_array_equal(activation, acts[path])


def written_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("wchar:"))


def test_a_blocked_sink_holds_the_worker_back_through_the_pipe(remote):
    net, x = remote.build(LENET, dtype="float64"), lenet_input(batch=64)
    sizes = {path: activation.nbytes for path, activation in remote.forward(net, x, capture=PATHS)[1].items()}
    pid = remote.request(None, "ping")[0]["pid"]
    pipe = fcntl.fcntl(remote.connection.worker.proc.stdout.fileno(), F_GETPIPE_SZ)
    entered, release, got = threading.Event(), threading.Event(), []

    def sink(path, activation):
        got.append(path)
        entered.set()
        release.wait(30)

    before = written_bytes(pid)
    runner = threading.Thread(target=remote.stream, args=(net, x, PATHS, sink))
    runner.start()
    try:
        assert entered.wait(30)
        time.sleep(0.5)  # time for the worker to race ahead, were it free to
        ahead = written_bytes(pid) - before
        bound = sizes[PATHS[0]] + pipe + (64 << 10)  # the node in the sink, a full pipe, headers
        assert got == PATHS[:1]
        assert ahead <= bound < sum(sizes.values())
    finally:
        release.set()
        runner.join(30)
    assert got == PATHS and remote.request(None, "ping")[0]["pid"] == pid


def test_an_error_in_the_worker_mid_stream_comes_back_as_a_forwards_does(tmp_path):
    backend = WorkerBackend("numpy", wrapper(tmp_path, "raise"), "test")
    try:
        net, x = backend.build(LENET, dtype="float64"), lenet_input()
        with pytest.raises(RuntimeError) as forward_error:
            backend.forward(net, x, capture=PATHS)
        got = []
        with pytest.raises(RuntimeError) as stream_error:
            backend.stream(net, x, PATHS, lambda path, activation: got.append(path))
        assert got == PATHS[:2]  # it failed mid-stream
        assert type(stream_error.value) is type(forward_error.value)
        assert isinstance(stream_error.value, WorkerError)
        assert str(stream_error.value) == str(forward_error.value)
        assert "test fault: the backend failed" in str(stream_error.value)
        assert "raising_stream" in stream_error.value.remote_traceback
        assert backend.count_params(net) == (61706, 61706)  # and the worker serves on
    finally:
        backend.close()


def test_an_unknown_node_is_refused_as_a_forward_refuses_it(remote):
    net, x = remote.build(LENET), seeded_input(LENET.input_shape)
    errors = []
    for call in (lambda: remote.forward(net, x, capture=["no_such_node"]),
                 lambda: remote.stream(net, x, ["no_such_node"], lambda path, activation: None)):
        with pytest.raises(KeyError) as caught:
            call()
        errors.append(caught.value)
    assert type(errors[0]) is type(errors[1]) and str(errors[0]) == str(errors[1])


class SinkFailed(Exception):
    pass


def test_an_exception_in_the_sink_leaves_the_worker_usable(remote):
    net, x = remote.build(LENET, dtype="float64"), lenet_input(batch=64)  # nodes larger than the pipe
    pid, got = remote.request(None, "ping")[0]["pid"], []

    def sink(path, activation):
        got.append(path)
        if len(got) == 2:
            raise SinkFailed(path)

    with pytest.raises(SinkFailed, match=PATHS[1]):
        remote.stream(net, x, PATHS, sink)
    assert got == PATHS[:2]  # the rest was read and dropped, not handed over
    assert remote.request(None, "ping")[0]["pid"] == pid
    out, acts = remote.forward(net, x, capture=PATHS)
    streamed, again = collect(remote, net, x)
    np.testing.assert_array_equal(streamed, out)
    assert [path for path, _ in again] == PATHS


def test_an_interrupted_sink_kills_the_worker_and_the_next_build_starts_one():
    backend = WorkerBackend("numpy", sys.executable, "test")
    try:
        net, x = backend.build(LENET, dtype="float64"), lenet_input()

        def sink(path, activation):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            backend.stream(net, x, PATHS, sink)
        with pytest.raises(BackendFailure, match="interrupted during 'stream'"):
            backend.forward(net, x)
        fresh = backend.build(LENET, dtype="float64")
        assert len(collect(backend, fresh, x)[1]) == len(PATHS)
    finally:
        backend.close()


def test_a_worker_killed_mid_stream_is_a_backend_failure():
    backend = WorkerBackend("numpy", sys.executable, "test")
    try:
        net, x = backend.build(LENET, dtype="float64"), lenet_input(batch=64)  # nodes larger than the pipe
        pid = backend.request(None, "ping")[0]["pid"]

        def sink(path, activation):
            os.kill(pid, signal.SIGKILL)

        with pytest.raises(BackendFailure, match="killed by SIGKILL during 'stream'"):
            backend.stream(net, x, PATHS, sink)
    finally:
        backend.close()


def test_a_worker_that_hangs_mid_stream_times_out(tmp_path):
    backend = WorkerBackend("numpy", wrapper(tmp_path, "hang"), "test", timeout=1)
    try:
        net, got = backend.build(LENET), []
        with pytest.raises(BackendFailure, match=r"timed out after 1 s during 'stream' \(killed\)"):
            backend.stream(net, seeded_input(LENET.input_shape), PATHS, lambda path, activation: got.append(path))
        assert got == PATHS[:1]
    finally:
        backend.close()
