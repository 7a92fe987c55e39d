"""What a worker's failures become in the parent.

- `BackendFailure`: the worker died (a signal, an exit) or overran its time. An
  environment failure of that backend, never a disagreement.
- The worker's own exceptions: a refnets exception comes back as that same class
  (BackendUnavailableError, CapabilityError, UnsupportedNodeError,
  InputTooSmallError, WeightMismatchError, ...); a builtin one (ValueError,
  KeyError, RuntimeError from a framework...) as a `WorkerError` that is also an
  instance of the builtin, so `except ValueError` still works; anything else as a
  plain `WorkerError`. Each keeps the worker's traceback in `remote_traceback`.
- `WorkerConfigError`: a worker interpreter that is badly configured (a usage error).
"""

from __future__ import annotations

import builtins
import sys
from typing import Dict, Optional


class BackendFailure(RuntimeError):
    """A backend's worker process died or timed out: `backend`, `reason` (e.g.
    'killed by SIGSEGV during 'forward'', 'timed out after 600 s ...'), the last
    lines of its stderr and the interpreter it ran in."""

    def __init__(self, backend: str, reason: str, stderr: str = "", python: str = ""):
        self.backend, self.reason, self.stderr, self.python = backend, reason, stderr, python
        super().__init__(f"the {backend} worker {reason}{self.stderr_block()}")

    def stderr_block(self, lines: int = 12) -> str:
        tail = [line for line in self.stderr.splitlines() if line.strip()][-lines:]
        return "; last lines of its stderr:\n" + "\n".join("    " + line for line in tail) if tail else \
            " (nothing on its stderr)"

    def summary(self) -> str:
        """One line: the backend and what happened to its worker."""
        return f"the {self.backend} worker {self.reason}"


class WorkerError(RuntimeError):
    """An exception raised by the worker's own code that has no refnets class
    here: `remote_type` is its qualified name, `remote_traceback` the worker's."""

    remote_type = ""
    remote_traceback = ""


class WorkerConfigError(ValueError):
    """A configured worker interpreter that cannot serve (a missing path, not a
    python, no numpy/safetensors there, an unknown backend name): a usage error."""


_MIXED: Dict[type, type] = {}


def _worker_flavour(base: type) -> type:
    """WorkerError that is also a `base` (ValueError, KeyError, ...)."""
    if base not in _MIXED:
        _MIXED[base] = type(f"Worker{base.__name__}", (WorkerError, base), {"__module__": __name__})
    return _MIXED[base]


def local_class(module: str, name: str) -> Optional[type]:
    """The exception class `module.name` if the parent already imported it (a
    refnets module, or a builtin); never imports anything (a framework's module
    must not be imported here)."""
    if module == "builtins":
        found = getattr(builtins, name, None)
    elif module.split(".")[0] == "refnets" and module in sys.modules:
        found = getattr(sys.modules[module], name, None)
    else:
        found = None
    return found if isinstance(found, type) and issubclass(found, Exception) else None


def rebuild(error: dict, backend: str) -> Exception:
    """The parent's exception for a worker's error header."""
    module, name, message = error.get("module", ""), error.get("type", ""), error.get("message", "")
    err = WorkerConfigError(message) if name == "WorkerConfigError" else None
    cls = local_class(module, name)
    if err is None and cls is not None and module != "builtins":
        try:
            err = cls(message)
        except Exception:  # noqa: BLE001 (a class with another constructor: fall back)
            err = None
    if err is None:
        kind = _worker_flavour(cls) if cls is not None and cls is not Exception else WorkerError
        text = message if cls is not None else f"{module}.{name}: {message}"
        err = kind(f"in the {backend} worker: {text}")
        err.remote_type = f"{module}.{name}"
    err.remote_traceback = error.get("traceback", "")
    return err
