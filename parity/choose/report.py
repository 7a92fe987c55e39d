"""Text tables and JSON of `--bench` and `--fit`.

Bench: each figure is the median of its repeats, with its ratio to the best
backend (x1.00 is the best; a larger ratio is that many times slower, or
larger in memory, or lower in throughput) and the spread of its repeats
((max - min) / median). A backend measured while the rest of the machine used
more than `machine.BUSY_CORES` cores is marked `*`.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence, Tuple

from .bench import BenchResult, median, spread
from .fit import FitResult
from .machine import BUSY_CORES

MIB = 2 ** 20

# --------------------------------------------------------------------- bench


def bench_rows(result: BenchResult) -> List[Tuple[str, str, bool, Dict[str, Tuple[float, Optional[float]]]]]:
    """(figure, unit, higher is better, backend -> (value, spread or None)) for every figure."""
    runs = result.backends
    rows = [("import", "s", False, {b: (r.import_seconds, None) for b, r in runs.items()}),
            ("build", "ms", False, {b: (1e3 * median(r.build), spread(r.build)) for b, r in runs.items()})]
    for batch in result.batches:
        rows.append((f"forward, batch {batch}", "ms", False,
                     {b: (1e3 * median(r.forward[batch]), spread(r.forward[batch])) for b, r in runs.items()}))
        rows.append((f"throughput, batch {batch}", "img/s", True,
                     {b: (batch / median(r.forward[batch]), None) for b, r in runs.items()}))
    for batch in result.batches:
        timed = {b: r.step[batch] for b, r in runs.items() if batch in r.step}
        if timed:
            rows.append((f"train step, batch {batch}", "ms", False,
                         {b: (1e3 * median(s), spread(s)) for b, s in timed.items()}))
    rows.append(("peak memory", "MiB", False, {b: (r.peak_rss_bytes / MIB, None) for b, r in runs.items()}))
    return rows


def ratio(value: float, values: Sequence[float], higher_better: bool) -> float:
    best = max(values) if higher_better else min(values)
    if higher_better:
        return best / value if value else float("inf")
    return value / best if best else 1.0


def _cell(value: float, unit: str, rel: float, spread_: Optional[float]) -> str:
    text = f"{value:.3g} {unit} x{rel:.2f}"
    return text + (f" ±{spread_:.0%}" if spread_ is not None else "")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def bench_text(result: BenchResult) -> str:
    m = result.machine
    out = [f"benchmark: {result.model} ({result.dtype}), {result.threads} thread(s) per backend, "
           f"median of {result.repeats} after {result.warmup} warm-up; each backend in a fresh worker",
           f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}"]
    names = list(result.backends)
    if names:
        rows = []
        for figure, unit, higher, cells in bench_rows(result):
            values = [cells[b][0] for b in names if b in cells]
            rows.append([figure] + [_cell(cells[b][0], unit, ratio(cells[b][0], values, higher), cells[b][1])
                                    if b in cells else "-" for b in names])
        loads = [f"{r.load.others_cores} cores{' *' if r.load.under_load else ''}" for r in result.backends.values()]
        rows.append(["load (others' CPU)"] + loads)
        rows.append(["load average"] + [f"{r.load.loadavg_before} -> {r.load.loadavg_after}"
                                        for r in result.backends.values()])
        out += ["", table(["figure"] + names, rows), "",
                "x: ratio to the best backend (x1.00 best); ±: spread of the repeats, (max - min) / median"]
        busy = [b for b, r in result.backends.items() if r.load.under_load]
        if busy:
            out.append(f"* measured under load (the rest of the machine used more than {BUSY_CORES} core): "
                       f"{', '.join(busy)}; these figures are slower than on an idle machine")
        for b, r in result.backends.items():
            out += [f"note ({b}): {note}" for note in r.notes]
        versions = {k: v for r in result.backends.values() for k, v in r.versions.items()}
        out.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for b, why in result.failures.items():
        out.append(f"FAILED {b}: {why}")
    return "\n".join(out)


def bench_json(result: BenchResult) -> Dict[str, object]:
    ratios = {}
    for figure, unit, higher, cells in bench_rows(result):
        values = [v for v, _ in cells.values()]
        ratios[figure] = {b: {"value": v, "unit": unit, "ratio_to_best": ratio(v, values, higher), "spread": s}
                          for b, (v, s) in cells.items()}
    return {"mode": "bench", "model": result.model, "dtype": result.dtype, "batches": result.batches,
            "repeats": result.repeats, "warmup": result.warmup, "threads": result.threads, "train": result.train,
            "machine": result.machine, "figures": ratios, "failures": result.failures,
            "backends": {b: {"import_seconds": r.import_seconds, "build_seconds": r.build,
                             "forward_seconds": {str(k): v for k, v in r.forward.items()},
                             "step_seconds": {str(k): v for k, v in r.step.items()},
                             "peak_rss_bytes": r.peak_rss_bytes, "load": r.load.to_json(), "versions": r.versions,
                             "notes": r.notes} for b, r in result.backends.items()}}


# ----------------------------------------------------------------------- fit


def fit_text(result: FitResult) -> str:
    names = list(result.curves)
    out = [f"fit: {result.model} on {result.data} ({result.n_train} train / {result.n_test} test images, "
           f"{result.how}), {result.epochs} epoch(s), batch {result.batch}, {result.optimizer} lr {result.lr:g}"
           f"{f' momentum {result.momentum:g}' if result.momentum else ''}, seed {result.seed}, float32"]
    epochs = [[str(e + 1)] + [f"{result.curves[b].train_loss[e]:.4f} / {result.curves[b].test_accuracy[e]:.2%}"
                              for b in names] for e in range(result.epochs)]
    out += ["", table(["epoch"] + [f"{b}: loss / test acc" for b in names], epochs), ""]
    rows = []
    floor_gaps = result.gaps(result.floor)
    for b in names + ["floor"]:
        curves = result.floor if b == "floor" else result.curves[b]
        gaps = result.gaps(curves)
        rows.append([f"{result.reference} floor" if b == "floor" else b, f"{curves.test_accuracy[-1]:.2%}",
                     f"{curves.train_loss[-1]:.4f}", f"{sum(curves.seconds) / len(curves.seconds):.2f}",
                     "-" if b == result.reference else f"{gaps['train_loss']:.2e}",
                     "-" if b == result.reference else f"{100 * gaps['test_accuracy']:.2f} pp"])
    out.append(table(["backend", "final test acc", "final loss", "s/epoch", "max |loss gap|", "max |acc gap|"], rows))
    out.append(f"gaps: against {result.reference}, over the epochs; 'floor' is {result.reference} again from "
               f"weights one rounding unit away (max |loss gap| {floor_gaps['train_loss']:.2e}): the drift of the "
               f"same arithmetic")
    if result.load is not None:
        load = result.load
        out.append(f"load: the rest of the machine used {load.others_cores} cores on average (load average "
                   f"{load.loadavg_before} -> {load.loadavg_after}){'; seconds measured under load' if load.under_load else ''}")
    if result.dropout_removed:
        out.append(f"dropout ran as identity: {', '.join(result.dropout_removed)}")
    out.append("versions: " + ", ".join(f"{k} {v}" for k, v in result.versions.items()))
    return "\n".join(out)


def fit_json(result: FitResult) -> Dict[str, object]:
    return {"mode": "fit", "model": result.model, "data": result.data, "how": result.how, "n_train": result.n_train,
            "n_test": result.n_test, "epochs": result.epochs, "batch": result.batch, "optimizer": result.optimizer,
            "lr": result.lr, "momentum": result.momentum, "seed": result.seed, "reference": result.reference,
            "backends": {b: {**c.to_json(), "max_gap": result.gaps(c)} for b, c in result.curves.items()},
            "floor": {**result.floor.to_json(), "max_gap": result.gaps(result.floor)},
            "load": result.load.to_json() if result.load else None, "machine": result.machine,
            "versions": result.versions}


def dumps(data: Dict[str, object]) -> str:
    return json.dumps(data, indent=1, allow_nan=False)

