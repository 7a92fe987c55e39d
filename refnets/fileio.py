"""Files the command lines write: checked before any work, written atomically.

`check_output_path(path, flag)` fails at once (raising `error`, default
`OutputPathError`) when a file could not be written there: its directory is
missing, is not a directory or is not writable, or the path is a directory.
`write_atomic(path, data)` writes a temporary file beside `path` and renames it
over `path` (`os.replace`), so an interrupted or failed write (Ctrl-C, a full
disk) never leaves a half-written file: the old file, or none, stays. Imports
no framework."""

from __future__ import annotations

import os
import tempfile
from typing import Sequence, Type, Union


class OutputPathError(ValueError):
    """An output path that cannot be written: the message names the flag and why."""


def check_output_path(path: str, flag: str, suffixes: Sequence[str] = (),
                      error: Type[Exception] = OutputPathError) -> str:
    """`path` if a file can be written there, else raise `error` naming `flag`."""
    if not path:
        raise error(f"{flag}: give a file name")
    if suffixes and not path.endswith(tuple(suffixes)):
        raise error(f"{flag} {path}: the file name must end in {' or '.join(suffixes)}")
    if os.path.isdir(path):
        raise error(f"{flag} {path}: is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        raise error(f"{flag} {path}: the directory {parent} does not exist (create it first)")
    if not os.path.isdir(parent):
        raise error(f"{flag} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise error(f"{flag} {path}: the directory {parent} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise error(f"{flag} {path}: the file exists and is not writable")
    return path


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str, data: Union[str, bytes]) -> None:
    """Write `data` (text as UTF-8) to `path` all at once: a temporary file in the
    same directory, then `os.replace`. On any failure or interruption the
    temporary file is removed and `path` is left as it was."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
