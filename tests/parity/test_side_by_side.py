"""Steps of a run go side by side when every backend lives in a worker, one after
another otherwise; errors come back to the caller, Ctrl-C stops the wait."""

import threading

import pytest

from parity.engine.session import each_backend
from parity.engine.sidebyside import run_side_by_side
from refnets import workers


class FakeWorker(workers.WorkerBackend):
    def __init__(self, name):  # no process: only the type matters here
        self.name = name


def _meeting(parties):
    """A step that can only end when all `parties` steps run at the same time."""
    barrier = threading.Barrier(parties, timeout=10)
    seen = []

    def step(name):
        barrier.wait()
        seen.append(name)
    return step, seen


def test_worker_backends_run_their_steps_side_by_side():
    step, seen = _meeting(3)
    impls = {name: FakeWorker(name) for name in ("a", "b", "c")}
    each_backend(impls, impls, step)
    assert sorted(seen) == ["a", "b", "c"]


def test_in_process_backends_run_one_after_another():
    order = []
    impls = {"a": FakeWorker("a"), "b": object()}  # one backend in this process: no overlap
    each_backend(impls, impls, order.append)
    assert order == ["a", "b"]


def test_errors_come_back_in_job_order_after_every_job_ended():
    ended = []

    def fails(message):
        def job():
            raise RuntimeError(message)
        return job

    with pytest.raises(RuntimeError, match="first"):
        run_side_by_side({"a": fails("first"), "b": fails("second"), "c": lambda: None},
                         on_done=lambda name, error: ended.append((name, error is None)))
    assert sorted(ended) == [("a", False), ("b", False), ("c", True)]


def test_ctrl_c_in_the_waiting_thread_calls_on_interrupt_and_raises_at_once():
    import _thread

    started, release = threading.Event(), threading.Event()
    interrupted = []

    def blocked():
        started.set()
        release.wait(10)

    def press_ctrl_c():
        started.wait(10)
        _thread.interrupt_main()  # KeyboardInterrupt in the main thread, as Ctrl-C

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_side_by_side({"blocked": blocked}, on_interrupt=lambda: interrupted.append(release.is_set()))
    assert interrupted == [False]  # raised while the job still ran
    release.set()
