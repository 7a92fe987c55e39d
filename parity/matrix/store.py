"""The matrix's --out DIR: one JSON file per finished cell (`cells/KEY.json`),
written atomically (`parity.outputs.write_atomic`) the moment the cell finishes,
so an interrupted matrix loses only the cells that were running; `matrix.json`
and `matrix.md` for the whole.

A rerun reads the cell files back and skips every cell whose file holds a verdict
(agree or disagree) for the same settings hash; a failed cell, a file from other
settings and an unreadable file are run again."""

from __future__ import annotations

import json
import os
from typing import Dict, List

from ..engine.config import ParityUsageError
from ..outputs import check_output_path, write_atomic

CELLS = "cells"
MATRIX_JSON, MATRIX_MD = "matrix.json", "matrix.md"


def prepare(out: str) -> str:
    """The output directory, created if only it is missing; a usage error, before
    anything runs, when it cannot be (no parent, not a directory, not writable)."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ParityUsageError(f"--out {out}: exists and is not a directory")
    if not os.path.exists(out) and not os.path.isdir(parent):
        raise ParityUsageError(f"--out {out}: its parent directory {parent} does not exist")
    try:
        os.makedirs(os.path.join(out, CELLS), exist_ok=True)
    except OSError as err:
        raise ParityUsageError(f"--out {out}: cannot create it: {err.strerror or err}") from None
    check_output_path(cell_path(out, "any"), "--out")  # writable: refused before any cell runs
    return out


def cell_path(out: str, key: str) -> str:
    return os.path.join(out, CELLS, f"{key}.json")


def save_cell(out: str, record: dict) -> None:
    write_atomic(cell_path(out, record["key"]), json.dumps(record, indent=1, allow_nan=False))


def done_before(out: str, cells: List[dict]) -> Dict[str, dict]:
    """key -> saved record, for each cell already finished with a verdict under
    the same settings."""
    done = {}
    for cell in cells:
        try:
            with open(cell_path(out, cell["key"])) as stream:
                record = json.load(stream)
        except (OSError, ValueError):
            continue
        if (isinstance(record, dict) and record.get("settings_hash") == cell["settings_hash"]
                and record.get("outcome") in ("agree", "disagree")):
            done[cell["key"]] = record
    return done


def save_matrix(out: str, document: dict, markdown: str) -> None:
    write_atomic(os.path.join(out, MATRIX_JSON), json.dumps(document, indent=1, allow_nan=False))
    write_atomic(os.path.join(out, MATRIX_MD), markdown)
