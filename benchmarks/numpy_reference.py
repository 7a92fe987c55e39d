"""Every framework against the numpy reference backend, over the whole zoo.

    python -m benchmarks.numpy_reference [--models a,b] [--out benchmarks/results]

For each model (the small inputs of `benchmarks.agreement`) and dtype: one parity
run with `numpy` as the reference and every installed framework beside it, seeded
canonical weights with randomised BatchNorm statistics, batch 2; max|fw - numpy| /
max|numpy| per framework. Each run in its own process would be cleaner; one
process is enough here because every model is freed before the next. Writes
numpy_reference.json and numpy_reference.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time

from parity import run
from refnets import backends

from .agreement import SMALL


def one(model: str, shape, dtype: str, frameworks) -> dict:
    start = time.perf_counter()
    result = run(model, backends=["numpy"] + list(frameworks), input_shape=shape, dtype=dtype)
    row = {"model": model, "input": "x".join(map(str, shape)), "dtype": dtype, "passed": result.passed,
           "max_rel": {name: result.results[name].comparison.max_rel for name in frameworks},
           "numpy_forward_s": result.timings["forward"]["numpy"], "seconds": time.perf_counter() - start}
    del result
    gc.collect()
    return row


def markdown(rows, frameworks) -> str:
    lines = ["max|framework - numpy| / max|numpy| of every framework against the numpy reference backend "
             "(batch 2, seeded weights, BatchNorm statistics randomised).", "",
             "| model | input | dtype | " + " | ".join(frameworks) + " | numpy forward s |",
             "|---|---|---|" + "---|" * len(frameworks) + "---|"]
    for r in rows:
        cells = " | ".join(f"{r['max_rel'][f]:.1e}" for f in frameworks)
        lines.append(f"| {r['model']} | {r['input']} | {r['dtype']} | {cells} | {r['numpy_forward_s']:.2f} |")
    for dtype in ("float32", "float64"):
        worst = {f: max((r["max_rel"][f] for r in rows if r["dtype"] == dtype), default=None) for f in frameworks}
        lines.append(f"| **worst** | | {dtype} | " + " | ".join(f"**{v:.1e}**" for v in worst.values()) + " | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="comma-separated subset")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args(argv)
    frameworks = backends.installed()
    models = args.models.split(",") if args.models else list(SMALL)
    rows = []
    for model in models:
        for dtype in ("float32", "float64"):
            rows.append(one(model, SMALL[model], dtype, frameworks))
            worst = max(rows[-1]["max_rel"].values())
            print(f"{model:16s} {dtype}  worst {worst:.2e}  {rows[-1]['seconds']:.1f}s", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "numpy_reference.json"), "w") as handle:
        json.dump({"frameworks": frameworks, "rows": rows}, handle, indent=1)
    with open(os.path.join(args.out, "numpy_reference.md"), "w") as handle:
        handle.write(markdown(rows, frameworks))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
