"""The worker's side: `python -m refnets.workers BACKEND_LABEL [--tf32]`.

The parent speaks over the worker's stdin and stdout (see `protocol`). Frameworks
print to stdout, so the first thing the worker does is to keep private copies of
fds 0 and 1 for the protocol and point fd 1 at stderr (and fd 0 at /dev/null).

Requests are `{"op": ..., "free": [ids], ...}` plus arrays; every op answers
`{"ok": true, "result": ...}` plus arrays (after one `{"node": path}` message per
captured node for "stream"), or `{"ok": false, "error": {"type",
"module", "message", "traceback"}}`. Nets and trainers stay here, named by integer
ids the parent holds; "free" lists ids whose handles the parent dropped.

Imports numpy when the first request arrives, and the framework only through
`refnets.backends.get`, never jsonschema (the spec arrives as JSON that the
parent wrote, loaded without the schema step).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Dict, Optional

from ..memory import release_freed_memory
from . import protocol, timing

REQUIRED = ("numpy", "safetensors")


def take_protocol_fds():
    """(read fd, write fd) for the protocol; fd 1 then goes to stderr, fd 0 to /dev/null."""
    read_fd, write_fd = os.dup(0), os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return read_fd, write_fd


def error_header(err: BaseException) -> dict:
    kind = type(err)
    return {"ok": False, "error": {"type": kind.__name__, "module": kind.__module__, "message": str(err),
                                   "traceback": "".join(traceback.format_exception(kind, err, err.__traceback__))}}


def missing_requirements():
    """The modules of REQUIRED this interpreter cannot import, with why."""
    missing = []
    for name in REQUIRED:
        try:
            __import__(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    return missing


class Worker:
    """One backend in this process, and the nets and trainers built in it."""

    def __init__(self, label: str, tf32: bool):
        self.label, self.tf32 = label, tf32
        self.objects: Dict[int, object] = {}
        self.next_id = 1
        self.backend = None
        self.write_fd: Optional[int] = None  # the protocol's, for ops that answer in several messages

    def load(self) -> dict:
        import refnets
        from refnets import backends as B

        start = time.perf_counter()
        self.backend = B.get(self.label, tf32=self.tf32)
        import_seconds = time.perf_counter() - start
        import numpy as np

        return {"name": self.backend.name, "device": self.backend.device,
                "describe_device": self.backend.describe_device(), "capabilities": list(self.backend.capabilities),
                "missing_converters": list(self.backend.missing_converters()),
                "versions": dict(self.backend.versions()), "refnets": os.path.dirname(refnets.__file__),
                "python": sys.version.split()[0], "numpy": np.__version__, "executable": sys.executable,
                "pid": os.getpid(), "import_seconds": import_seconds}

    def keep(self, obj) -> int:
        ident, self.next_id = self.next_id, self.next_id + 1
        self.objects[ident] = obj
        return ident

    def get(self, ident: int):
        if ident not in self.objects:
            raise KeyError(f"no object {ident} in the worker (freed already?)")
        return self.objects[ident]

    # ---------------------------------------------------------------- the ops

    def op_build(self, header, arrays):
        from refnets import specfile

        model = specfile.from_json(header["spec"], validate=False)
        return self.keep(self.backend.build(model, dtype=header["dtype"])), {}

    def op_get_weights(self, header, arrays):
        return None, dict(self.backend.get_weights(self.get(header["net"])))

    def op_set_weights(self, header, arrays):
        self.backend.set_weights(self.get(header["net"]), arrays)
        return None, {}

    def op_forward(self, header, arrays):
        out, acts = self.backend.forward(self.get(header["net"]), arrays["x"], capture=header["capture"],
                                         train=header["train"])
        captured = list(acts)
        return captured, {"out": out, **{f"capture/{i}": acts[path] for i, path in enumerate(captured)}}

    def op_stream(self, header, arrays):
        """A capturing forward whose nodes go to the parent as the backend hands them
        over, one message each ({"node": path} plus the array "a"), before the final
        reply holding the output. The write blocks while the pipe is full, so a
        parent whose sink is busy holds the backend back; once written, the node is
        not held here."""
        def send(path, activation):
            protocol.write_message(self.write_fd, {"node": path}, {"a": activation})

        x = arrays.pop("x")
        out = self.backend.stream(self.get(header["net"]), x, header["capture"], send, train=header["train"])
        return None, {"out": out}

    def op_count_params(self, header, arrays):
        return list(self.backend.count_params(self.get(header["net"]))), {}

    def op_gradients(self, header, arrays):
        grads = self.backend.gradients(self.get(header["net"]), arrays["x"], arrays["labels"], train=header["train"])
        return {"loss": float(grads.loss), "params": list(grads.params)}, {
            "logits": grads.logits, "input": grads.input,
            **{f"param/{i}": grads.params[name] for i, name in enumerate(grads.params)}}

    def op_trainer(self, header, arrays):
        trainer = self.backend.Trainer(self.get(header["net"]), header["optimizer"], header["lr"], header["momentum"])
        return self.keep(trainer), {}

    def op_step(self, header, arrays):
        return float(self.get(header["trainer"]).step(arrays["x"], arrays["labels"])), {}

    # timing inside the worker (see `timing`): no round trip in the figures

    def op_time_build(self, header, arrays):
        """Seconds of each of `repeats` builds of the spec (the models are dropped)."""
        from refnets import specfile

        model = specfile.from_json(header["spec"], validate=False)
        return timing.time_calls(lambda: self.backend.build(model, dtype=header["dtype"]), header["repeats"], 0), {}

    def op_time_forward(self, header, arrays):
        net, x = self.get(header["net"]), arrays["x"]
        return timing.time_calls(lambda: self.backend.forward(net, x), header["repeats"], header["warmup"]), {}

    def op_time_step(self, header, arrays):
        trainer, x, labels = self.get(header["trainer"]), arrays["x"], arrays["labels"]
        return timing.time_calls(lambda: trainer.step(x, labels), header["repeats"], header["warmup"]), {}

    def op_train_batches(self, header, arrays):
        return timing.train_batches(self.get(header["trainer"]), arrays["x"], arrays["labels"], header["batch"]), {}

    def op_resources(self, header, arrays):
        return timing.resources(), {}

    def op_ping(self, header, arrays):
        """The worker's pid and how many nets and trainers it holds."""
        return {"pid": os.getpid(), "held": len(self.objects)}, {}

    def handle(self, header, arrays):
        for ident in header.get("free", ()):
            self.objects.pop(ident, None)
        op = getattr(self, f"op_{header['op']}", None)
        if op is None:
            raise ValueError(f"unknown worker op {header['op']!r}")
        return op(header, arrays)


def serve(read_fd: int, write_fd: int, worker: Worker) -> None:
    worker.write_fd = write_fd
    while True:
        try:
            header, arrays = protocol.read_message(read_fd)
        except protocol.ChannelClosed:
            return
        if header.get("op") == "exit":
            protocol.write_message(write_fd, {"ok": True, "result": None})
            return
        try:
            result, out = worker.handle(header, arrays)
            del arrays
            protocol.write_message(write_fd, {"ok": True, "result": result}, out)
            del result, out  # the captures are the parent's now: do not hold them while idle
            release_freed_memory()  # an idle worker does not sit on its last request's high-water mark
        except Exception as err:  # noqa: BLE001 (every failure goes back to the parent)
            protocol.write_message(write_fd, error_header(err))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    read_fd, write_fd = take_protocol_fds()
    if not argv or argv[0].startswith("-"):
        print("usage: python -m refnets.workers BACKEND_LABEL [--tf32] (started by refnets, speaks on stdin/stdout)",
              file=sys.stderr)
        return 2
    missing = missing_requirements()
    if missing:
        protocol.write_message(write_fd, {"ok": False, "error": {
            "type": "WorkerConfigError", "module": "refnets.workers", "traceback": "",
            "message": f"{sys.executable} cannot import {', '.join(missing)}; a worker's interpreter needs numpy "
                       f"and safetensors: {sys.executable} -m pip install numpy safetensors"}})
        return 2
    from . import config

    config.in_worker()
    worker = Worker(argv[0], "--tf32" in argv[1:])
    try:
        hello = worker.load()
    except Exception as err:  # noqa: BLE001
        protocol.write_message(write_fd, error_header(err))
        return 2
    protocol.write_message(write_fd, {"ok": True, "result": hello})
    serve(read_fd, write_fd, worker)
    return 0
