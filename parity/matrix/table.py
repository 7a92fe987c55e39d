"""The matrix for people (a markdown table: models x dtype/mode, the verdict and
worst error of each cell, and a summary line) and for machines (one JSON
document holding every cell's record); and the exit code of the whole."""

from __future__ import annotations

from typing import Dict, List

from .cells import MODES


def exit_code(records: List[dict]) -> int:
    """2 if any cell failed to run, else 1 if any disagrees, else 0."""
    outcomes = {r["outcome"] for r in records}
    return 2 if "failed" in outcomes else 1 if "disagree" in outcomes else 0


def counts(records: List[dict]) -> Dict[str, int]:
    return {outcome: sum(r["outcome"] == outcome for r in records) for outcome in ("agree", "disagree", "failed")}


def summary_line(records: List[dict], skipped: int, wall: float) -> str:
    c = counts(records)
    again = f" ({skipped} done before, skipped)" if skipped else ""
    return (f"matrix: {len(records)} cells{again}: {c['agree']} agree, {c['disagree']} disagree, "
            f"{c['failed']} failed; {wall:.1f} s")


def _error(value) -> str:
    return "inf/NaN" if value is None else f"{value:.1e}"


def cell_text(record: dict) -> str:
    """`agree 3.1e-07`, `**DISAGREE** 2.0e-02 (keras)`, `FAILED`."""
    if record["outcome"] == "failed":
        return "FAILED"
    worst = record["worst"]
    if worst is None:
        return record["outcome"]
    if record["outcome"] == "agree":
        return f"agree {_error(worst['max_rel'])}"
    return f"**DISAGREE** {_error(worst['max_rel'])} ({worst['backend']})"


def columns(records: List[dict]) -> List[tuple]:
    """(dtype, mode) pairs present, dtype-major, modes in MODES order."""
    present = {(r["dtype"], r["mode"]) for r in records}
    return sorted(present, key=lambda c: (c[0], MODES.index(c[1])))


def markdown(records: List[dict], skipped: int, wall: float) -> str:
    cols = columns(records)
    models = list(dict.fromkeys(r["model"] for r in records))
    by_key = {(r["model"], r["dtype"], r["mode"]): r for r in records}
    lines = ["| model | " + " | ".join(f"{d} {m}" for d, m in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for model in models:
        texts = [cell_text(by_key[(model, d, m)]) if (model, d, m) in by_key else "-" for d, m in cols]
        lines.append(f"| {model} | " + " | ".join(texts) + " |")
    lines += ["", "Each cell: the verdict and the worst relative error max|out-ref|/max|ref| over the backends "
                  "compared with the reference (for grad and train: over the loss, outputs and every gradient or "
                  "running statistic).", ""]
    failed = [r for r in records if r["outcome"] == "failed"]
    if failed:
        lines += ["Failed cells (no verdict):", ""]
        lines += [f"- {r['key']}: {r['error'].splitlines()[0]}" for r in failed] + [""]
    lines.append(summary_line(records, skipped, wall))
    return "\n".join(lines) + "\n"


def document(records: List[dict], settings: dict, skipped: int, wall: float) -> dict:
    return {"settings": settings, "summary": {**counts(records), "cells": len(records), "skipped": skipped,
                                              "wall_seconds": wall, "exit_code": exit_code(records)},
            "cells": records}
