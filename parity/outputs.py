"""Output files of every parity mode and subcommand (--json, --save-weights,
reproducers, matrix results, plots): `check_output_path(path, flag)` before any
work (a ParityUsageError, exit 2, when the file could not be written there) and
`write_atomic(path, data)` (a temporary file renamed over the path: Ctrl-C or a
failure never leaves a half-written file). Imports no framework."""

from __future__ import annotations

from typing import Optional, Sequence, Union

from refnets import fileio

from .engine.config import ParityUsageError

WEIGHT_SUFFIXES = (".safetensors", ".npz")


def check_output_path(path: Optional[str], flag: str, suffixes: Sequence[str] = ()) -> Optional[str]:
    """`path` (None passes: the flag was not given) if a file can be written there;
    else ParityUsageError naming `flag`: a missing or unwritable directory, a path
    that is a directory, a name without one of `suffixes`."""
    if path is None:
        return None
    return fileio.check_output_path(path, flag, suffixes, error=ParityUsageError)


def write_atomic(path: str, data: Union[str, bytes]) -> None:
    """Write `data` (str as UTF-8, or bytes) to `path` via a temporary file and os.replace."""
    fileio.write_atomic(path, data)


__all__ = ["ParityUsageError", "WEIGHT_SUFFIXES", "check_output_path", "write_atomic"]
