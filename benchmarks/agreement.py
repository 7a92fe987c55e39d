"""Worst cross-backend error of every model, float32 and float64.

    python -m benchmarks.agreement [--full] [--models a,b] [--out benchmarks/results]

For each model: the parity run with every installed backend as the reference in
turn (so every ordered pair is covered), seeded canonical weights with randomised
BatchNorm statistics, batch 2; the worst max|a-b|/max|ref| over the pairs. Small
inputs by default; `--full` adds the models' default (224x224) inputs in float32.
Writes agreement.json and agreement.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time

import refnets
from parity import run
from refnets import backends, registry

SMALL = registry.SMALL_INPUTS


def worst(model: str, shape, dtype: str, installed, options=None) -> dict:
    errors = {}
    for reference in installed:
        result = run(model, backends=installed, reference=reference, input_shape=shape, dtype=dtype,
                     options=options)
        for name in installed:
            if name != reference:
                errors[f"{reference}->{name}"] = result.results[name].comparison.max_rel
        del result
        gc.collect()
    pair = max(errors, key=errors.get)
    return {"model": model, "options": options or {}, "input": "x".join(map(str, shape)), "dtype": dtype,
            "worst_rel": errors[pair], "worst_pair": pair, "errors": errors}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true")
    p.add_argument("--models", help="comma-separated subset")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args(argv)
    installed = backends.installed()
    models = args.models.split(",") if args.models else list(SMALL)
    cases = [(m, SMALL[m], d, None) for m in models for d in ("float32", "float64")]
    if "googlenet" in models:
        cases += [("googlenet", (3, 40, 40), d, {"layout": "torchvision"}) for d in ("float32", "float64")]
    if args.full:
        cases += [(m, refnets.get_spec(m).input_shape, "float32", None) for m in models]
    rows = []
    for model, shape, dtype, options in cases:
        start = time.perf_counter()
        rows.append(worst(model, shape, dtype, installed, options))
        print(f"{model:16s} {rows[-1]['input']:9s} {dtype}  worst {rows[-1]['worst_rel']:.2e} "
              f"({rows[-1]['worst_pair']})  {time.perf_counter() - start:.1f}s", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "agreement.json"), "w") as handle:
        json.dump({"backends": installed, "rows": rows}, handle, indent=1)
    with open(os.path.join(args.out, "agreement.md"), "w") as handle:
        handle.write(markdown(rows, installed))
    return 0


def markdown(rows, installed) -> str:
    lines = [f"Worst max|a-b|/max|ref| over every ordered pair of {', '.join(installed)} (batch 2).", "",
             "| model | input | float32 | float64 |", "|---|---|---|---|"]
    table = {}
    for r in rows:
        label = r["model"] + "".join(f" {k}={v}" for k, v in r["options"].items())
        table.setdefault((label, r["input"]), {})[r["dtype"]] = f"{r['worst_rel']:.1e}"
    for (label, shape), cells in table.items():
        lines.append(f"| {label} | {shape} | {cells.get('float32', '-')} | {cells.get('float64', '-')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
