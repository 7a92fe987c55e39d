"""`python -m benchmarks._worker KIND JSON`: one measurement in a fresh process
(started by `benchmarks._common.worker`); prints its result as one JSON line."""

from __future__ import annotations

import time

_START = time.perf_counter()  # before anything of refnets or a framework is imported
_START_CPU = time.process_time()

import json  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    kind, kwargs = sys.argv[1], json.loads(sys.argv[2])
    from ._common import emit

    if kind == "latency":
        from .latency import measure

        emit(measure(**kwargs))
    elif kind == "training":
        from .training import measure

        emit(measure(**kwargs))
    elif kind in ("parity", "alone", "baseline"):
        from . import harness

        emit(getattr(harness, f"worker_{kind}")(start=_START, start_cpu=_START_CPU, **kwargs))
    else:
        raise SystemExit(f"unknown worker {kind!r}")


if __name__ == "__main__":
    main()
