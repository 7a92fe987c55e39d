"""Backends in worker processes, in this interpreter or another one.

    refnets.workers.configure({"mxnet": "/legacy/venv/bin/python"})
    refnets.backends.get("mxnet")     # -> a WorkerBackend: the contract, served by the worker

The parent sends the spec as JSON (`refnets.specfile`) and arrays in the safetensors
format over the worker's stdin/stdout (`protocol`); the worker (`server`, run as
`python -m refnets.workers LABEL`) imports this same source tree, whatever is
installed in its interpreter, and needs only numpy and safetensors besides its
framework. Which backends go to workers, and where: `config`. Failures: `errors`
(a dead or overdue worker is a `BackendFailure`, an environment failure of that
backend, never a disagreement).

Importing this package starts nothing and imports no framework.
"""

from __future__ import annotations

from typing import Iterable, Optional

from . import config
from .backend import WorkerBackend, close_all, kill_all, pooled
from .config import configure, set_mode
from .errors import BackendFailure, WorkerConfigError, WorkerError


def backend_for(label: str, tf32: bool = False) -> Optional[WorkerBackend]:
    """The pooled WorkerBackend of backend `label` (a name, or `name:device`) when it
    is to run in a worker, else None. Starts nothing."""
    from refnets import backends

    label = backends.canonical_label(label)
    interpreter = config.worker_python(backends.parse_label(label)[0])
    if interpreter is None:
        return None
    return pooled(label, interpreter.python, interpreter.source, tf32)


def is_configured(name: str) -> bool:
    """Whether an interpreter is configured for backend `name` (it then counts as installed)."""
    return name in config.interpreters()


def prestart(labels: Iterable[str], tf32: bool = False) -> None:
    """Starts the workers of `labels` that run in workers, all at once, so that
    their frameworks import side by side; `refnets.backends.get` then waits for each."""
    for label in labels:
        backend = backend_for(label, tf32)
        if backend is not None:
            backend.start()


__all__ = ["BackendFailure", "WorkerBackend", "WorkerConfigError", "WorkerError", "backend_for", "close_all", "kill_all",
           "config", "configure", "is_configured", "prestart", "set_mode"]
