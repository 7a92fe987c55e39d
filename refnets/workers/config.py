"""Which backends run in worker processes, and in which interpreters.

A backend runs in a worker when an interpreter is configured for it, or when
every backend is sent to workers (`set_mode("workers")`, parity's `--workers`;
then in this interpreter unless one is configured). Interpreters are configured,
highest precedence first:

1. `configure({"mxnet": "/path/bin/python"})` (parity's `--python NAME=PATH`);
2. the environment variable `REFNETS_PYTHON="mxnet=/path/bin/python[,keras=/other]"`;
3. a config file: `refnets.toml` in the current directory, else
   `$XDG_CONFIG_HOME/refnets/config.toml` (default `~/.config/refnets/config.toml`),
   table `[python]`, e.g. `mxnet = "/path/bin/python"` (read with tomllib: Python 3.11+,
   or the `tomli` package on 3.10).

Relative paths are taken from the current directory (the config file's directory
for a file); a bare name (`python3.10`) is looked up on PATH. Every entry is
checked when the configuration is first read: a name that is not a backend, or a
path that is not an executable file, is a `WorkerConfigError` (a usage error)
naming where it was set. Whether the interpreter is a python with numpy,
safetensors and the framework is found out when its worker starts.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Dict, NamedTuple, Optional

from .errors import WorkerConfigError

ENV_PYTHON = "REFNETS_PYTHON"
ENV_MODE = "REFNETS_WORKERS"  # "1": every backend in a worker; "0": in process unless configured
MODES = ("in-process", "workers")
DEFAULT_MODE = "in-process"  # the library's: `refnets.backends.get` returns native models (parity's CLI: workers)


class Interpreter(NamedTuple):
    python: str  # absolute path
    source: str  # where it was configured, for messages: "--python", "REFNETS_PYTHON", a file, "--workers"


ENV_TIMEOUT = "REFNETS_WORKER_TIMEOUT"  # seconds one request may take
ENV_STARTUP_TIMEOUT = "REFNETS_WORKER_STARTUP_TIMEOUT"  # seconds a worker may take to import its framework
DEFAULT_TIMEOUT = 1800.0  # a hang detector, not a speed limit: the numpy reference's float64 VGG gradients take minutes
DEFAULT_STARTUP_TIMEOUT = 180.0  # importing TensorFlow on a loaded machine takes tens of seconds

_STATE = {"cli": {}, "mode": None, "in_worker": False, "timeout": None}


def in_worker() -> None:
    """Called by a worker process: it runs its backend itself, whatever is configured."""
    _STATE["in_worker"] = True


def reset() -> None:
    """Forget `configure`, `set_mode` and `set_timeout` (parity's CLI does at the end of a run)."""
    _STATE.update(cli={}, mode=None, timeout=None)


def set_timeout(seconds: Optional[float]) -> None:
    """Seconds one request to a worker may take (None: REFNETS_WORKER_TIMEOUT, else DEFAULT_TIMEOUT)."""
    if seconds is not None and not seconds > 0:
        raise WorkerConfigError(f"a worker timeout is a number of seconds > 0, got {seconds!r}")
    _STATE["timeout"] = seconds


def env_seconds(variable: str, default: float) -> float:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise WorkerConfigError(f"{variable}={text!r}: give a number of seconds > 0")
    return value


def call_timeout() -> float:
    return _STATE["timeout"] or env_seconds(ENV_TIMEOUT, DEFAULT_TIMEOUT)


def startup_timeout() -> float:
    return env_seconds(ENV_STARTUP_TIMEOUT, DEFAULT_STARTUP_TIMEOUT)


def set_mode(mode: Optional[str]) -> None:
    """"workers": every backend in a worker; "in-process": only the configured
    ones; None: the default (REFNETS_WORKERS, else DEFAULT_MODE)."""
    if mode is not None and mode not in MODES:
        raise WorkerConfigError(f"worker mode must be one of {', '.join(MODES)}, got {mode!r}")
    _STATE["mode"] = mode


def mode() -> str:
    if _STATE["mode"]:
        return _STATE["mode"]
    env = os.environ.get(ENV_MODE, "").strip().lower()
    if env in ("1", "true", "yes", "workers"):
        return "workers"
    if env in ("0", "false", "no", "in-process"):
        return "in-process"
    if env:
        raise WorkerConfigError(f"{ENV_MODE}={env!r}: use 1 (every backend in a worker) or 0 (in this process)")
    return DEFAULT_MODE


def resolve_python(path: str, name: str, source: str, base: Optional[str] = None) -> str:
    """The absolute path of an executable interpreter, or WorkerConfigError."""
    path = os.path.expanduser(str(path).strip())
    if not path:
        raise WorkerConfigError(f"{source}: no interpreter given for {name} (write {name}=/path/to/bin/python)")
    if os.sep not in path and not os.path.exists(path):
        found = shutil.which(path)
        if found is None:
            raise WorkerConfigError(f"{source}: {name}={path}: no such interpreter on PATH; give the path of a python, "
                                    f"e.g. {name}=/path/to/venv/bin/python")
        path = found
    path = os.path.abspath(os.path.join(base or os.getcwd(), path))
    if not os.path.exists(path):
        raise WorkerConfigError(f"{source}: {name}={path}: no such file; give the path of a python interpreter, "
                                f"e.g. {name}=/path/to/venv/bin/python")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise WorkerConfigError(f"{source}: {name}={path}: not an executable file; give the path of a python "
                                f"interpreter, e.g. {name}=/path/to/venv/bin/python")
    return path


def check_backend_name(name: str, source: str) -> str:
    from refnets.backends import catalog

    if name not in catalog.BACKENDS:
        raise WorkerConfigError(f"{source}: {name!r} is not a backend; choose from {', '.join(catalog.BACKENDS)}")
    return name


def parse_pairs(text: str, source: str) -> Dict[str, str]:
    """'mxnet=/a/python,keras=/b/python' -> {name: path} (unchecked)."""
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, path = item.partition("=")
        if not sep:
            raise WorkerConfigError(f"{source}: {item!r} is not NAME=PATH (e.g. mxnet=/path/to/venv/bin/python)")
        pairs[name.strip()] = path.strip()
    return pairs


def config_file() -> Optional[str]:
    """The config file in use: ./refnets.toml, else the user's config.toml; None if neither exists."""
    if os.path.isfile("refnets.toml"):
        return os.path.abspath("refnets.toml")
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    path = os.path.join(home, "refnets", "config.toml")
    return path if os.path.isfile(path) else None


def read_config_file(path: str) -> Dict[str, str]:
    """The [python] table of a TOML config file."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise WorkerConfigError(f"{path}: reading a config file needs Python 3.11+ (tomllib) or the tomli "
                                    f"package; or set {ENV_PYTHON} instead") from None
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, ValueError) as err:
        raise WorkerConfigError(f"{path}: cannot read the config file: {err}") from None
    table = data.get("python", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise WorkerConfigError(f"{path}: [python] must map backend names to interpreter paths, "
                                f"e.g. mxnet = \"/path/to/venv/bin/python\"")
    return dict(table)


def _checked(pairs: Dict[str, str], source: str, base: Optional[str] = None) -> Dict[str, Interpreter]:
    return {check_backend_name(name, source): Interpreter(resolve_python(path, name, source, base), source)
            for name, path in pairs.items()}


def configure(pythons: Optional[Dict[str, str]] = None, source: str = "--python") -> None:
    """Interpreters given on the command line (or by a caller): they override the
    environment variable and the config file, name by name."""
    _STATE["cli"] = _checked(dict(pythons or {}), source)


def interpreters() -> Dict[str, Interpreter]:
    """Backend name -> configured interpreter, by precedence (see the module
    docstring). The environment and the file are read afresh at every call."""
    if _STATE["in_worker"]:
        return {}
    merged: Dict[str, Interpreter] = {}
    path = config_file()
    if path:
        merged.update(_checked(read_config_file(path), path, os.path.dirname(path)))
    env = os.environ.get(ENV_PYTHON, "")
    if env.strip():
        merged.update(_checked(parse_pairs(env, ENV_PYTHON), ENV_PYTHON))
    return {**merged, **_STATE["cli"]}


def worker_python(name: str) -> Optional[Interpreter]:
    """The interpreter `name`'s worker runs in, or None: in this process."""
    if _STATE["in_worker"]:
        return None
    configured = interpreters().get(name)
    if configured is not None:
        return configured
    if mode() == "workers":
        return Interpreter(sys.executable, "--workers")
    return None
