"""Where the cells run: a local process pool (`concurrent.futures`, spawned
processes) or a Ray cluster (`ray.remote` tasks, `ray.wait` for progress). Both
hand each finished cell's record to `on_done` in this process as it arrives (the
caller saves it at once), and both stop their workers when interrupted.

A cell that cannot be run by the engine (its pool process died, a Ray task
crashed) comes back as a failed record, never as a verdict."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, List

from ..engine.config import ParityUsageError
from .cells import failed_record, run_cell

HEARTBEAT_S = 30.0
OnDone = Callable[[dict], None]


class Display:
    """Progress on stderr: a line per finished cell (done/total, running, failed)
    and a heartbeat while cells run."""

    def __init__(self, total: int, parallel: int, stream=None, quiet: bool = False):
        self.total, self.parallel, self.done, self.failed = total, parallel, 0, 0
        self.stream, self.quiet, self.start = stream or sys.stderr, quiet, time.perf_counter()

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"[matrix] {message}", file=self.stream, flush=True)

    def status(self) -> str:
        running = min(self.parallel, self.total - self.done)
        return f"{self.done}/{self.total} done, {running} running, {self.failed} failed"

    def finished(self, record: dict) -> None:
        self.done += 1
        self.failed += record["outcome"] == "failed"
        worst = record.get("worst") or {}
        error = f" {worst['max_rel']:.1e}" if worst.get("max_rel") is not None else ""
        self.say(f"{self.status()}: {record['key']} {record['outcome']}{error} ({record['seconds']:.1f} s)")

    def heartbeat(self) -> None:
        self.say(f"{self.status()}; {time.perf_counter() - self.start:.0f} s")


def _start_pool_process(threads: int) -> None:
    """Pool processes leave Ctrl-C to the parent, which stops them; and share the
    cores: OMP_NUM_THREADS = cores // workers unless already set (as Ray sets it for
    a one-CPU task), read by the frameworks when they load, here or in the cell's
    backend workers, which inherit the environment."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def pool_record(future, cell: dict) -> dict:
    try:
        return future.result()
    except BrokenProcessPool:
        return failed_record(cell, "its pool process died (killed, out of memory or crashed) while this cell or "
                                   "one beside it ran; rerun to retry it, with --workers 1 to tell which")
    except Exception as err:  # the cell could not be sent or its record not returned
        return failed_record(cell, f"the pool could not run it: {type(err).__name__}: {err}")


def run_pool(cells: List[dict], workers: int, on_done: OnDone, display: Display) -> None:
    """Every cell in a pool of `workers` spawned processes (a fresh interpreter:
    no framework state inherited from this one)."""
    before = set(multiprocessing.active_children())
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_pool_process, initargs=(threads_per_worker(workers),))
    futures = {executor.submit(run_cell, cell): (index, cell) for index, cell in enumerate(cells)}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=HEARTBEAT_S, return_when=FIRST_COMPLETED)
            if not done:
                display.heartbeat()
            for future in sorted(done, key=lambda f: futures[f][0]):  # cells finished together: in plan order
                on_done(pool_record(future, futures[future][1]))
    finally:
        if pending:  # interrupted: stop the cells still running, start no other
            for process in set(multiprocessing.active_children()) - before:
                process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------ Ray


def import_ray():
    try:
        import ray
    except ImportError:
        raise ParityUsageError("--ray needs the ray package: pip install 'refnets[ray]'") from None
    return ray


def _source_dirs() -> List[str]:
    """This source tree's packages, shipped to the cluster (Ray's py_modules) so its
    workers run the same code; the frameworks must be installed there."""
    import parity
    import refnets

    return [os.path.dirname(parity.__file__), os.path.dirname(refnets.__file__)]


def check_reachable(address: str, seconds: float = 5.0) -> None:
    """A HOST:PORT address where nothing listens is refused at once (Ray itself
    would retry for minutes); `auto`, `local` and `ray://` ones are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=seconds).close()
    except OSError as err:
        raise ParityUsageError(f"--ray {address}: cannot connect to a Ray cluster there: nothing answers "
                               f"({err.strerror or err}); start one with: ray start --head --port={port}") from None


def connect(ray, address: str) -> None:
    check_reachable(address)
    try:
        ray.init(address=address, runtime_env={"py_modules": _source_dirs()}, log_to_driver=False,
                 logging_level="ERROR")
    except ConnectionError as err:
        raise ParityUsageError(f"--ray {address}: cannot connect to a Ray cluster there: {err}") from None


def run_ray(cells: List[dict], address: str, on_done: OnDone, display: Display) -> None:
    """Every cell as a Ray task (one CPU each, no retry: a crash is reported)."""
    ray = import_ray()
    connect(ray, address)
    try:
        display.parallel = int(ray.cluster_resources().get("CPU", 1))
        task = ray.remote(num_cpus=1, max_retries=0)(run_cell)
        refs = {task.remote(cell): cell for cell in cells}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=HEARTBEAT_S)
            if not ready:
                display.heartbeat()
            for ref in ready:
                on_done(ray_record(ray, ref, refs.pop(ref)))
    finally:
        # Interrupted or not: disconnecting ends the job, and Ray stops its tasks still
        # queued or running (ray.cancel(force=True) on each raced their completion in
        # Ray 2.60: a fatal check in the driver, "Tried to complete task that was not pending").
        ray.shutdown()


def ray_record(ray, ref, cell: dict) -> dict:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        return failed_record(cell, f"its Ray task failed: {type(err).__name__}: {str(err).splitlines()[0]}")
