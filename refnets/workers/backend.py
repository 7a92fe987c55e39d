"""`WorkerBackend`: the Backend contract, served by a worker process.

    backend = WorkerBackend("mxnet", "/legacy/bin/python")
    net = backend.build(spec)              # a handle; the model lives in the worker
    backend.set_weights(net, weights); out, acts = backend.forward(net, x, capture=paths)
    out = backend.stream(net, x, paths, sink)   # one message per node, sink(path, array) as each arrives

A net's handle frees the model in the worker when it is garbage-collected (the id
is queued and sent with the next request: a finalizer must not talk to the
worker itself, it may run in the middle of another request). One worker per
(backend label, interpreter, tf32), started once and reused (`pool`), closed at exit.
A worker that died is started afresh on the next build; handles into the dead
one raise its BackendFailure.
"""

from __future__ import annotations

import atexit
import collections
import os
import weakref
from typing import Dict, Optional, Tuple

from ..backends.base import Backend, Gradients
from . import config
from . import process as P
from .errors import BackendFailure

class Connection:
    """A worker process plus the ids of dropped handles still to free there."""

    def __init__(self, worker: P.WorkerProcess):
        self.worker = worker
        self.pending_free = collections.deque()

    def forget(self, ident: int) -> None:
        self.pending_free.append(ident)

    def call(self, op: str, arrays=None, timeout: Optional[float] = None, on_node=None, **fields):
        free = []
        while self.pending_free:
            free.append(self.pending_free.popleft())
        return self.worker.call({"op": op, "free": free, **fields}, arrays, timeout, on_node)


class WorkerHandle:
    """A net (or trainer) living in a worker: freed there when this is collected."""

    def __init__(self, connection: Connection, ident: int, what: str):
        self.connection, self.ident, self.what = connection, ident, what
        weakref.finalize(self, connection.forget, ident)

    def __repr__(self) -> str:
        worker = self.connection.worker
        return f"<{self.what} #{self.ident} in the {worker.label} worker, pid {worker.proc.pid}>"


class WorkerTrainer:
    """`Trainer(...)` of a WorkerBackend: `step(x, labels) -> loss`, run in the worker."""

    def __init__(self, backend: "WorkerBackend", net: WorkerHandle, handle: WorkerHandle):
        self.backend, self.net, self.handle = backend, net, handle

    def step(self, x, labels) -> float:
        result, _ = self.backend.request(self.handle, "step", {"x": x, "labels": labels}, trainer=self.handle.ident)
        return float(result)


class WorkerBackend(Backend):
    """The backend `label` (a catalog name, or `name:device`) in a worker run by
    `python`; `tf32` allows TF32 there on a GPU; `env`: variables its process gets
    on top of ours. `label`, `name`, `device` and
    `tf32` are those of the backend in the worker."""

    def __init__(self, label: str, python: str, source: str = "workers", tf32: bool = False,
                 timeout: Optional[float] = None, startup_timeout: Optional[float] = None,
                 env: Optional[Dict[str, str]] = None):
        name, _, device = label.partition(":")
        self.name, self.device, self.tf32 = name, device or "cpu", bool(tf32)
        self.python, self.source = python, source
        self.timeout, self.startup_timeout = timeout, startup_timeout  # None: config's, read at each use
        self.env = dict(env or {})  # variables its process gets on top of ours
        self.connection: Optional[Connection] = None

    # ------------------------------------------------------------ the process

    def start(self) -> "WorkerBackend":
        """Starts the worker (if none is running) without waiting for it."""
        if self.connection is None or not self.connection.worker.alive:
            startup = self.startup_timeout or config.startup_timeout()
            self.connection = Connection(P.WorkerProcess(self.label, self.python, self.tf32, startup,
                                                         source=self.source, env=self.env))
        return self

    def hello(self) -> dict:
        """What the worker said once its backend was imported (starting it if needed)."""
        return self.start().connection.worker.handshake()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.worker.close()
            self.connection = None

    def request(self, handle: Optional[WorkerHandle], op: str, arrays=None, on_node=None,
                **fields) -> Tuple[object, dict]:
        """One request to the worker holding `handle` (None: the current worker);
        `on_node(header, arrays)` takes the node messages of a streaming op."""
        connection = self.start().connection if handle is None else handle.connection
        if connection is not self.connection:
            worker = connection.worker
            raise worker.failure or BackendFailure(self.label, "was closed; this net lived in it", "", self.python)
        return connection.call(op, arrays, self.timeout or config.call_timeout(), on_node, **fields)

    @property
    def capabilities(self) -> Tuple[str, ...]:  # type: ignore[override]
        return tuple(self.hello()["capabilities"])

    # ------------------------------------------------------------ the contract

    def build(self, model, dtype: str = "float32") -> WorkerHandle:
        from .. import specfile

        self.hello()
        ident, _ = self.request(None, "build", spec=specfile.to_json(model), dtype=dtype)
        return WorkerHandle(self.connection, ident, f"{self.label} {model.name}")

    def get_weights(self, net) -> Dict[str, object]:
        return self.request(net, "get_weights", net=net.ident)[1]

    def set_weights(self, net, weights) -> None:
        self.request(net, "set_weights", dict(weights), net=net.ident)

    def forward(self, net, x, capture=(), train: bool = False):
        captured, arrays = self.request(net, "forward", {"x": x}, net=net.ident, capture=list(capture),
                                        train=bool(train))
        return arrays["out"], {path: arrays[f"capture/{i}"] for i, path in enumerate(captured)}

    def stream(self, net, x, capture, sink, train: bool = False):
        """The worker's own `stream`, each node sent over as it comes: `sink` gets it
        before the next is read, so a sink that blocks fills the pipe and stops the
        worker's backend too. Neither side holds more than the node in flight. An
        exception from `sink` is re-raised once the rest of the stream has been read
        and dropped (the worker stays usable); the timeout counts only the time
        spent waiting for the worker, not the time in `sink`."""
        def on_node(header, arrays):
            sink(header["node"], arrays.pop("a"))

        _, arrays = self.request(net, "stream", {"x": x}, on_node, net=net.ident, capture=list(capture),
                                 train=bool(train))
        return arrays["out"]

    def count_params(self, net) -> Tuple[int, int]:
        trainable, total = self.request(net, "count_params", net=net.ident)[0]
        return int(trainable), int(total)

    def versions(self) -> Dict[str, str]:
        hello = self.hello()
        out = dict(hello["versions"])
        out[f"{self.label} worker"] = f"python {hello['python']}, numpy {hello['numpy']} ({hello['executable']})"
        return out

    def gradients(self, net, x, labels, train: bool = False) -> Gradients:
        result, arrays = self.request(net, "gradients", {"x": x, "labels": labels}, net=net.ident, train=bool(train))
        params = {name: arrays[f"param/{i}"] for i, name in enumerate(result["params"])}
        return Gradients(result["loss"], arrays["logits"], arrays["input"], params)

    def Trainer(self, net, optimizer: str, lr: float, momentum: float = 0.0):  # noqa: N802
        ident, _ = self.request(net, "trainer", net=net.ident, optimizer=optimizer, lr=lr, momentum=momentum)
        return WorkerTrainer(self, net, WorkerHandle(net.connection, ident, f"{self.label} trainer"))

    def on(self, device: str, tf32: bool = False) -> "WorkerBackend":
        """The same backend on `device`: its own worker (see `refnets.backends.get`)."""
        from refnets import backends

        return backends.get(self.name if device == "cpu" else f"{self.name}:{device}", tf32)

    def describe_device(self) -> str:
        return f"{self.hello()['describe_device']} (in a worker)"

    def missing_converters(self):
        return list(self.hello()["missing_converters"])

    def __repr__(self) -> str:
        return f"<refnets backend {self.label!r} in a worker ({self.python})>"


_POOL: Dict[Tuple[str, str, bool], WorkerBackend] = {}


# The pooled workers are the ones a parity run drives side by side (several
# frameworks' thread pools on the same cores). OpenMP's default is to spin between
# parallel regions, burning the cores the other workers need: resnet50v2 with
# --layers and three workers on 2 cores took 20.9 s wall and 27.0 CPU s spinning,
# 15.4 s and 21.1 CPU s with passive waits. A user's own OMP_WAIT_POLICY wins.
SIDE_BY_SIDE_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def side_by_side_env() -> Dict[str, str]:
    """What a pooled worker's process gets on top of our environment."""
    return {k: v for k, v in SIDE_BY_SIDE_ENV.items() if k not in os.environ}


def pooled(label: str, python: str, source: str, tf32: bool = False) -> WorkerBackend:
    """The one WorkerBackend for (label, python, tf32), created on first use."""
    key = (label, python, bool(tf32))
    if key not in _POOL:
        _POOL[key] = WorkerBackend(label, python, source, tf32, env=side_by_side_env())
    return _POOL[key]


def close_all() -> None:
    """Closes every pooled worker (at exit, and for tests and benchmarks)."""
    for backend in list(_POOL.values()):
        backend.close()
    _POOL.clear()


def kill_all() -> None:
    """Kills every pooled worker at once (Ctrl-C: not after its current step)."""
    for backend in list(_POOL.values()):
        if backend.connection is not None:
            backend.connection.worker.kill()
            backend.connection = None
    _POOL.clear()


atexit.register(close_all)
