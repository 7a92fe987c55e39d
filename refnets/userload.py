"""Loading a user's native model: "MODULE:CALLABLE" (a dotted module or a .py file),
a callable that returns it, or the model itself. Whatever the user's code raises
is reported as `UserCodeError` naming what was being done (a usage error, exit 2),
never as ours. Serves `parity --port`, `parity MODULE:CALLABLE --from` and
`python -m refnets trace`. Imports no framework."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
import traceback
from typing import Callable, Union


class UserCodeError(ValueError):
    """MODULE:CALLABLE could not be imported or called: the message says why."""


def is_callable_ref(text: str) -> bool:
    """Whether a MODEL argument reads as MODULE:CALLABLE."""
    module, sep, attr = text.rpartition(":")
    return bool(sep and module and attr and attr.isidentifier())


def load_model(port: Union[str, Callable, object], adapter, flag: str = "--port"):
    """The user's native model from "MODULE:CALLABLE" (a dotted module or a .py
    file), from a callable that returns it, or the model itself. `adapter.is_model`
    tells a model from a factory."""
    if not isinstance(port, str):
        if adapter.is_model(port) or not callable(port):
            return port
        return run_user_code(port, getattr(port, "__name__", "the port callable"), "calling")
    module_name, sep, attr = port.rpartition(":")
    if not sep or not module_name or not attr:
        raise UserCodeError(f"{flag} takes MODULE:CALLABLE (e.g. examples.torch_resnet50v2:build), got {port!r}")
    factory = getattr(_import(module_name), attr, None)
    if factory is None:
        raise UserCodeError(f"{module_name} has no {attr!r}")
    return run_user_code(factory, port, "calling") if callable(factory) else factory


def _import(name: str):
    if name.endswith(".py") or os.sep in name:
        if not os.path.isfile(name):
            raise UserCodeError(f"no file {name}")
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(name))[0], name)
        module = importlib.util.module_from_spec(spec)
        run_user_code(lambda: spec.loader.exec_module(module), name, "importing")
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # `parity` as a console script: import from where it is run
    return run_user_code(lambda: importlib.import_module(name), name, "importing")


def run_user_code(action, name: str, doing: str):
    try:
        return action()
    except Exception as err:  # the user's code: report whatever it raised, and where
        where = user_frame(err)
        raise UserCodeError(f"{doing} {name} raised {type(err).__name__}: {err}"
                            f"{' (' + where + ')' if where else ''}") from err


_HERE = os.path.dirname(os.path.abspath(__file__))
_OURS = (_HERE + os.sep, os.path.join(os.path.dirname(_HERE), "parity") + os.sep)  # refnets/, parity/
_LIBRARIES = tuple(sorted({os.path.abspath(p) + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib")
                           if (p := sysconfig.get_paths().get(key))}, key=len, reverse=True))


def user_frame(err: BaseException) -> str:
    """"at FILE:LINE in FUNCTION: SOURCE" of the innermost frame of `err`'s
    traceback in the user's own code (not ours, not the standard library or an
    installed package); a SyntaxError's own file and line; "" if none."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"at {err.filename}:{err.lineno}"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if _is_users(f.filename)]
    if not frames:
        return ""
    frame = frames[-1]
    return f"at {frame.filename}:{frame.lineno} in {frame.name}{': ' + frame.line if frame.line else ''}"


def _is_users(filename: str) -> bool:
    if not filename or filename.startswith("<"):
        return False
    return not os.path.abspath(filename).startswith(_OURS + _LIBRARIES)
