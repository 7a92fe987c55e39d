"""The parent's side of one worker process: start it, send a request, wait for the
answer (with a timeout), notice its death, keep the tail of its stderr.

A worker that dies or overruns its time raises `BackendFailure` naming the
backend, the signal or exit status and the last lines of its stderr; an error the
worker's own code raised comes back as an exception (see `errors.rebuild`).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Optional, Tuple

from . import protocol
from .errors import BackendFailure, WorkerConfigError, rebuild

STDERR_LINES = 40
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The parent's environment with this source tree first on PYTHONPATH, so the
    worker's interpreter imports this refnets even where refnets is not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SOURCE_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def describe_exit(returncode: Optional[int]) -> str:
    """'killed by SIGSEGV', 'exited with status 3', 'still running'."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


PIPE_BYTES = 1 << 20
F_SETPIPE_SZ = 1031  # Linux's fcntl


def widen_pipe(fd: int) -> None:
    """Makes the worker's answer pipe PIPE_BYTES deep (Linux allows up to
    /proc/sys/fs/pipe-max-size, 1 MiB by default; the default depth is 64 KiB):
    a streaming worker then blocks on a busy parent 16 times less often, and runs
    at most that far ahead of it. Elsewhere, or when refused, the pipe stays as it is."""
    try:
        import fcntl

        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, OSError):
        pass


class WaitBudget:
    """The seconds a request may wait for its worker in all (None: no limit),
    spent only while waiting for a message."""

    def __init__(self, total: Optional[float]):
        self.total, self.spent = total, 0.0

    def left(self) -> Optional[float]:
        return None if self.total is None else max(self.total - self.spent, 0.0)

    def spend(self, seconds: float) -> None:
        self.spent += seconds


class StderrTail:
    """Drains a worker's stderr on a thread: every line goes on to our stderr
    (the frameworks' warnings stay visible, as in one process) and the last
    STDERR_LINES are kept for the failure message."""

    def __init__(self, stream, prefix: str, echo: bool):
        self.lines = collections.deque(maxlen=STDERR_LINES)
        self.prefix, self.echo = prefix, echo
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if self.echo:
                try:
                    print(f"{self.prefix}{line}", file=sys.stderr, flush=True)
                except (OSError, ValueError):  # our stderr was closed (interpreter shutting down)
                    pass
        stream.close()

    def text(self, wait: float = 1.0) -> str:
        self.thread.join(wait)
        return "\n".join(self.lines)


class WorkerProcess:
    """One running worker: `python -m refnets.workers LABEL` in `python`; `env`:
    variables set for it on top of ours (thread counts, for a benchmark)."""

    def __init__(self, label: str, python: str, tf32: bool = False, startup_timeout: float = 120.0,
                 echo_stderr: bool = True, source: str = "workers", env: Optional[Dict[str, str]] = None):
        self.label, self.python, self.source = label, python, source
        command = [python, "-m", "refnets.workers", label] + (["--tf32"] if tf32 else [])
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, cwd=SOURCE_ROOT, env=worker_env(env),
                                         start_new_session=True)
        except OSError as err:
            raise WorkerConfigError(f"cannot start the {label} worker with {python} ({source}): "
                                    f"{err.strerror or err}; give the path of a python interpreter") from None
        widen_pipe(self.proc.stdout.fileno())
        self.stderr = StderrTail(self.proc.stderr, f"[{label} worker] ", echo_stderr)
        self.startup_timeout = startup_timeout
        self.hello: Optional[dict] = None
        self.failure: Optional[BackendFailure] = None

    @property
    def alive(self) -> bool:
        return self.failure is None and self.proc.poll() is None

    def handshake(self) -> dict:
        """Waits for the worker's hello (its backend imported): the backend's
        name, capabilities, versions. A worker that cannot start is a usage
        error naming the interpreter; one whose framework is missing raises
        BackendUnavailableError."""
        if self.hello is not None:
            return self.hello
        try:
            header, _ = self._receive(WaitBudget(self.startup_timeout), "while starting")
        except BackendFailure as failure:
            raise WorkerConfigError(
                f"the {self.label} worker ({self.python}, {self.source}) did not start: {failure.reason}"
                f"{failure.stderr_block()}\nIs it a python interpreter (3.10+) with numpy and safetensors? "
                f"Check it with: {self.python} -c 'import numpy, safetensors'") from None
        if not header.get("ok"):
            self.close()
            err = rebuild(header["error"], self.label)
            if isinstance(err, (WorkerConfigError, ImportError)):  # this interpreter lacks something: say which
                err = type(err)(f"{err} [in {self.python}, the {self.label} worker's interpreter ({self.source}): "
                                f"install it there, or set another interpreter]")
            raise err
        self.hello = header["result"]
        return self.hello

    def call(self, header: dict, arrays=None, timeout: Optional[float] = None,
             on_node: Optional[Callable[[dict, dict], None]] = None) -> Tuple[object, dict]:
        """(result, arrays) of one request; the worker's own exception re-raised;
        BackendFailure when it dies or overruns `timeout` seconds.

        A streaming request ("stream") is answered by node messages, each handed to
        `on_node(header, arrays)` before the next is read (so a caller that blocks
        holds the worker back through the pipe), then by the usual final reply.
        `timeout` bounds the time spent waiting for the worker over the whole
        request; the time spent in `on_node` is the caller's and does not count."""
        self.handshake()
        if not self.alive:
            raise self.failure or self._died("before the request")
        try:
            protocol.write_message(self.proc.stdin.fileno(), header, arrays)
        except (BrokenPipeError, ConnectionResetError):
            raise self._died(f"while receiving {header['op']!r}") from None
        budget, doing = WaitBudget(timeout), f"during {header['op']!r}"
        answer, out = self._receive(budget, doing)
        while "node" in answer:
            if on_node is None:
                self.kill()
                raise self._fail(f"sent a node message {doing}, which does not stream (killed)")
            self._hand_over(on_node, answer, out, budget, doing)
            del out  # not held while the next node is read
            answer, out = self._receive(budget, doing)
        if not answer.get("ok"):
            raise rebuild(answer["error"], self.label)
        return answer["result"], out

    def _hand_over(self, on_node, answer: dict, out: dict, budget: "WaitBudget", doing: str) -> None:
        """`on_node(answer, out)`. When it raises, the rest of the stream is read and
        dropped (an Exception: the worker stays usable) or the worker is killed (an
        interrupt: it must not wait for the rest), and the exception goes on."""
        try:
            on_node(answer, out)
        except Exception:
            del out
            self._discard_stream(budget, doing)
            raise
        except BaseException:
            self.kill()
            self._fail(f"was killed: its caller was interrupted {doing}")
            raise

    def _discard_stream(self, budget: "WaitBudget", doing: str) -> None:
        """Reads the rest of a stream up to its final reply and drops it. A worker
        that dies meanwhile is recorded (self.failure) for the next request."""
        try:
            answer = {"node": None}
            while "node" in answer:
                answer, _ = self._receive(budget, doing)
        except BackendFailure:
            pass

    def _receive(self, budget: "WaitBudget", doing: str):
        start = time.monotonic()
        try:
            return protocol.read_message(self.proc.stdout.fileno(), budget.left())
        except protocol.ChannelTimeout:
            self.kill()
            raise self._fail(f"timed out after {budget.total:g} s {doing} (killed)") from None
        except protocol.ChannelClosed:
            raise self._died(doing) from None
        finally:
            budget.spend(time.monotonic() - start)

    def _died(self, doing: str) -> BackendFailure:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        return self._fail(f"{describe_exit(self.proc.returncode)} {doing}")

    def _fail(self, reason: str) -> BackendFailure:
        self.failure = BackendFailure(self.label, reason, self.stderr.text(), self.python)
        return self.failure

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self, timeout: float = 5.0) -> None:
        """Asks the worker to exit; kills it if it does not within `timeout`."""
        if self.proc.poll() is None and self.failure is None and self.hello is not None:
            try:
                protocol.write_message(self.proc.stdin.fileno(), {"op": "exit"})
                protocol.read_message(self.proc.stdout.fileno(), timeout)
            except (OSError, EOFError, protocol.ChannelTimeout):
                pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

