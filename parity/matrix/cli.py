"""python -m parity matrix [--models lenet,resnet18] [--backends torch,keras]
[--dtypes float32,float64] [--modes forward,grad,train] [--workers N | --ray ADDRESS]
[--out DIR]: every combination, one cell per (model, dtype, mode) over the chosen
backends, each run by the library (parity.run, run_grad, run_train).

Each finished cell is saved at once to DIR/cells/MODEL-DTYPE-MODE.json; a rerun of
the same command skips the cells already done with the same settings (and says how
many), so an interrupted matrix resumes. At the end: DIR/matrix.json (every cell's
record) and DIR/matrix.md (a table: models x dtype/mode, verdict and worst error).

Cells run in a local process pool (--workers N; default the cores, fewer when
memory is short) or as tasks on a Ray cluster (--ray ADDRESS, e.g. 127.0.0.1:6379
or auto; needs pip install 'refnets[ray]' and refnets' frameworks on the nodes).

Exit codes: 0 every cell agrees, 1 some disagree, 2 usage error or a cell failed
to run (reported as failed, never as a verdict), 130 interrupted (the finished
cells are saved; rerun to resume)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import List

from refnets import registry
from refnets.cliargs import parse_python_pair
from refnets.workers.config import ENV_MODE

from ..engine.config import DTYPES, USAGE_ERRORS, ParityUsageError
from ..engine.preflight import check_batch_flag
from . import engines, store, table
from .cells import FORWARD_BATCH, MODES, make_cell

CELL_MEMORY_GIB = 3.0  # a cell's processes with three frameworks loaded, peak (README, "The run matrix")


def _names(text: str) -> List[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parity matrix", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=_names, help="comma-separated zoo models (default: every one, see parity --list)")
    p.add_argument("--backends", type=_names, help="comma-separated, the reference first (default: every installed "
                                                   "framework)")
    p.add_argument("--dtypes", type=_names, default=list(DTYPES), help="default float32,float64")
    p.add_argument("--modes", type=_names, default=list(MODES), help="forward, grad, train (default all three)")
    p.add_argument("--small", action="store_true", help="each model at its small test input "
                                                        "(refnets.registry.SMALL_INPUTS) instead of its own")
    p.add_argument("--batch", type=int, help=f"default {FORWARD_BATCH} for forward, 8 for grad and train")
    p.add_argument("--seed", type=int, default=0)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="processes in the local pool (default: the cores, "
                                                                f"at most one per {CELL_MEMORY_GIB:g} GiB available)")
    where.add_argument("--ray", metavar="ADDRESS", help="run the cells as tasks on this Ray cluster")
    p.add_argument("--out", default="parity-matrix", metavar="DIR", help="results directory (default ./parity-matrix)")
    p.add_argument("--python", type=parse_python_pair, action="append", default=[], metavar="NAME=PATH",
                   help="run backend NAME in a worker in this interpreter, as parity's --python (repeatable)")
    p.add_argument("--in-process", action="store_true", help="run the backends in each cell's own process "
                                                             "(default: each in a worker process, as parity does)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _check(args) -> None:
    known = registry.list_models()
    for model in args.models or []:
        if model not in known:
            close = registry.closest_names(model)
            raise ParityUsageError(f"--models: unknown model {model!r}"
                                   + (f"; did you mean {', '.join(close)}?" if close else " (see parity --list)"))
    for flag, values, allowed in (("--dtypes", args.dtypes, DTYPES), ("--modes", args.modes, MODES)):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise ParityUsageError(f"{flag}: {', '.join(bad) or 'none given'}; choose from {', '.join(allowed)}")
    if args.workers is not None and args.workers < 1:
        raise ParityUsageError(f"--workers must be at least 1, got {args.workers}")
    check_batch_flag(args.batch)
    if args.ray is not None:
        engines.import_ray()  # missing: say which extra, before anything is written


def _backends(args) -> List[str]:
    from refnets import backends as B

    from ..engine.config import configure_pythons, resolve_backends

    configure_pythons(args.python)  # so that a backend with an interpreter counts as installed
    chosen = resolve_backends(args.backends, None)
    missing = [b for b in chosen if not B.is_installed(b)]
    if missing:
        raise ParityUsageError(f"--backends: {', '.join(missing)} not installed here (installed: "
                               f"{', '.join(B.installed()) or 'none'}); install it, or give --python NAME=PATH")
    return chosen


def plan(args) -> List[dict]:
    """Every cell of the matrix, models x dtypes x modes, in that order."""
    from refnets import workers

    from ..training import DEFAULT_BATCH

    backends = _backends(args)
    # Resolved here, not where the cell runs (a Ray node has its own environment):
    # --in-process, else REFNETS_WORKERS when set, else every backend in a worker as parity does.
    worker_mode = "in-process" if args.in_process else (workers.config.mode() if os.environ.get(ENV_MODE, "").strip()
                                                        else "workers")
    cells = []
    for model in dict.fromkeys(args.models or registry.list_models()):
        shape = registry.SMALL_INPUTS.get(model) if args.small else None
        for dtype in dict.fromkeys(args.dtypes):
            for mode in dict.fromkeys(args.modes):
                batch = args.batch or (FORWARD_BATCH if mode == "forward" else DEFAULT_BATCH)
                cells.append(make_cell(model, dtype, mode, backends, batch, args.seed, shape, worker_mode,
                                       dict(args.python)))
    return cells


def available_gib() -> float:
    """MemAvailable from /proc/meminfo (inf where there is none)."""
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return float("inf")


def default_workers(cells: int) -> int:
    by_memory = available_gib() // CELL_MEMORY_GIB
    return int(max(1, min(os.cpu_count() or 1, cells, by_memory)))


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as stop:  # argparse's own usage errors (exit 2) and --help (0)
        return int(stop.code or 0)
    try:
        return _main(args)
    except USAGE_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: the finished cells are saved in {args.out}/{store.CELLS}; rerun the same command to "
              f"resume", file=sys.stderr)
        return 130
    finally:
        from refnets import workers

        workers.config.reset()


def _main(args) -> int:
    _check(args)
    cells = plan(args)
    out = store.prepare(args.out)
    done = store.done_before(out, cells)
    to_run = [cell for cell in cells if cell["key"] not in done]
    parallel = 1 if args.ray else args.workers or default_workers(len(to_run))
    display = engines.Display(len(to_run), parallel, quiet=args.quiet)
    where = f"on Ray at {args.ray}" if args.ray else f"in a pool of {parallel}"
    display.say(f"{len(cells)} cells, {len(done)} done before with the same settings (skipped), "
                f"{len(to_run)} to run {where}; results in {out}")
    records = dict(done)
    load_before, start = os.getloadavg(), time.perf_counter()

    def on_done(record: dict) -> None:
        store.save_cell(out, record)
        records[record["key"]] = record
        display.finished(record)

    if to_run and args.ray:
        engines.run_ray(to_run, args.ray, on_done, display)
    elif to_run:
        engines.run_pool(to_run, parallel, on_done, display)
    wall = time.perf_counter() - start
    ordered = [records[cell["key"]] for cell in cells]
    text = table.markdown(ordered, len(done), wall)
    settings = _settings(args, cells, parallel, load_before)
    store.save_matrix(out, table.document(ordered, settings, len(done), wall), text)
    print(text, end="")
    return table.exit_code(ordered)


def _settings(args, cells: List[dict], parallel: int, load_before) -> dict:
    """What the matrix.json says about the run as a whole."""
    return {"models": list(dict.fromkeys(c["model"] for c in cells)), "backends": cells[0]["backends"],
            "dtypes": list(dict.fromkeys(args.dtypes)), "modes": list(dict.fromkeys(args.modes)),
            "small": args.small, "seed": args.seed, "engine": f"ray {args.ray}" if args.ray else f"pool {parallel}",
            "driver": {"host": socket.gethostname(), "pid": os.getpid()}, "loadavg_before": list(load_before),
            "loadavg_after": list(os.getloadavg())}
