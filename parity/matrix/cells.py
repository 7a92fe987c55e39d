"""One cell of the run matrix: a (model, dtype, mode) over the chosen backends, run
by the library's own entry points (`parity.run`, `run_grad`, `run_train`) and
turned into a JSON-able record: its outcome, the worst error, seconds, failures.

A cell is plain data (a dict) so that it travels to a pool process or a Ray
worker as it is; `run_cell` is the only function those run. Importing this module
imports no framework."""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
import traceback
from typing import Dict, List, Optional, Tuple

import refnets

MODES = ("forward", "grad", "train")
OUTCOMES = ("agree", "disagree", "failed")
FORWARD_BATCH = 2  # parity's inference default; grad and train: parity.training.DEFAULT_BATCH


def key_of(cell: dict) -> str:
    """The cell's name, also its file name: `lenet-float64-forward`."""
    return f"{cell['model']}-{cell['dtype']}-{cell['mode']}"


def settings_hash(cell: dict) -> str:
    """What decides a cell's figures (not where or how it ran): a rerun skips a
    finished cell only when this is unchanged."""
    keep = {k: cell[k] for k in ("model", "input_shape", "dtype", "mode", "backends", "batch", "seed")}
    keep["refnets"] = refnets.__version__
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def make_cell(model: str, dtype: str, mode: str, backends: List[str], batch: int, seed: int,
              input_shape: Optional[Tuple[int, ...]], worker_mode: Optional[str], pythons: Dict[str, str]) -> dict:
    cell = {"model": model, "dtype": dtype, "mode": mode, "backends": list(backends), "batch": batch, "seed": seed,
            "input_shape": None if input_shape is None else list(input_shape), "worker_mode": worker_mode,
            "pythons": dict(pythons)}
    cell["key"] = key_of(cell)
    cell["settings_hash"] = settings_hash(cell)
    return cell


# ------------------------------------------------------------------ the worst error


def _rank(max_rel: float) -> float:
    return math.inf if math.isnan(max_rel) else max_rel  # NaN counts as the worst


def _worst_of(candidates) -> Optional[dict]:
    """The largest max_rel of (backend, what, Comparison) triples (the first of equals)."""
    worst = None
    for backend, what, comparison in candidates:
        if worst is None or _rank(comparison.max_rel) > _rank(worst["max_rel"]):
            worst = {"backend": backend, "what": what, "max_rel": comparison.max_rel, "max_abs": comparison.max_abs}
    return worst


def worst_forward(result) -> Optional[dict]:
    return _worst_of((name, "output", r.comparison) for name, r in result.results.items()
                     if r.comparison is not None)


def worst_training(result) -> Optional[dict]:
    def comparisons():
        for name, r in result.results.items():
            for what in ("loss", "outputs", "input_grad"):
                if getattr(r, what) is not None:
                    yield name, what, getattr(r, what)
            for p in r.params:
                yield name, f"{p.kind} {p.name}", p.comparison
    return _worst_of(comparisons())


# ------------------------------------------------------------------ running a cell


def _configure_workers(cell: dict) -> None:
    from refnets import workers

    workers.configure(cell["pythons"])
    workers.set_mode(cell["worker_mode"])


def _entry(cell: dict):
    """(result, report module, worst) of the cell's library entry point."""
    import parity
    from parity.reports import inference, training

    common = dict(backends=cell["backends"], batch=cell["batch"], input_shape=cell["input_shape"],
                  dtype=cell["dtype"], seed=cell["seed"])
    if cell["mode"] == "forward":
        result = parity.run(cell["model"], **common)
        return result, inference.as_dict(result), worst_forward(result)
    run = parity.run_grad if cell["mode"] == "grad" else parity.run_train
    result = run(cell["model"], **common)
    return result, training.as_dict(result), worst_training(result)


def failed_record(cell: dict, reason: str, seconds: float = 0.0, failures: Optional[dict] = None) -> dict:
    """A cell that did not run to a verdict (a usage error, a crash, a dead worker)."""
    return {**_identity(cell), "outcome": "failed", "exit_code": 2, "worst": None, "seconds": seconds,
            "error": reason, "failures": dict(failures or {}), "result": None}


def _identity(cell: dict) -> dict:
    return {k: cell[k] for k in ("key", "settings_hash", "model", "dtype", "mode", "backends", "batch", "seed",
                                 "input_shape")}


def run_cell(cell: dict) -> dict:
    """Runs one cell in this process and returns its record, with the host and
    process it ran in; never raises for what the cell itself does (a failure is a
    record with outcome "failed")."""
    return {**_run(cell), "ran_on": {"host": socket.gethostname(), "pid": os.getpid()}}


def _run(cell: dict) -> dict:
    from parity.engine.config import USAGE_ERRORS
    from parity.reports.tables import strict

    start = time.perf_counter()
    try:
        _configure_workers(cell)
        result, detail, worst = _entry(cell)
    except USAGE_ERRORS as err:
        return failed_record(cell, f"{type(err).__name__}: {err}", time.perf_counter() - start)
    except Exception as err:  # a bug or a framework error in this cell: the others still run
        return failed_record(cell, f"internal error {type(err).__name__}: {err}\n{traceback.format_exc()}",
                             time.perf_counter() - start)
    seconds = time.perf_counter() - start
    failures = dict(getattr(result, "failures", {}))
    if failures:
        return {**failed_record(cell, "a backend failed: " + ", ".join(failures), seconds, failures),
                "result": strict(detail)}
    outcome = "agree" if result.exit_code == 0 else "disagree"
    return strict({**_identity(cell), "outcome": outcome, "exit_code": result.exit_code, "worst": worst,
                   "seconds": seconds, "error": None, "failures": {}, "result": detail})
