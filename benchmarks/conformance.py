"""Conformance with the frameworks' own model zoos: the worst relative error of
every backend against every zoo model, float32 and float64.

    python -m benchmarks.conformance [--zoos keras,gluon] [--models a,b] [--dtypes float32,float64]
                                     [--batch 1] [--out benchmarks/results]

Each (zoo, model, dtype) runs `parity.run_against` with every installed backend at
the zoo model's 224x224 input, in a fresh subprocess (so a 140M-parameter VGG in
four frameworks never shares a process with the next model). Writes
conformance.json and conformance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import refnets
from refnets import backends
from refnets import zoo_import as Z


def one(zoo: str, native: str, dtype: str, batch: int, chosen=None) -> dict:
    from parity import run_against
    from refnets import backends

    start = time.perf_counter()
    result = run_against(native, zoo, backends=chosen or backends.installed(), batch=batch, dtype=dtype)
    return {"zoo": zoo, "zoo_model": native, "model": result.model, "options": result.options, "dtype": dtype,
            "batch": batch, "passed": result.passed,
            "max_rel": {b: r.comparison.max_rel for b, r in result.results.items() if r.comparison},
            "seconds": time.perf_counter() - start}


def _subprocess(zoo: str, native: str, dtype: str, batch: int, chosen) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.conformance", "--one", zoo, native, dtype, "--batch", str(batch),
           "--backends", ",".join(chosen)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        return {"zoo": zoo, "zoo_model": native, "dtype": dtype, "error": done.stderr[-2000:]}
    return json.loads(line[len("RESULT "):])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoos", default="keras,gluon")
    p.add_argument("--models", help="comma-separated zoo model names (default: all of each zoo)")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--split-above", type=float, default=100e6,
                   help="models with more parameters run one backend per subprocess (memory)")
    p.add_argument("--one", nargs=3, metavar=("ZOO", "MODEL", "DTYPE"), help=argparse.SUPPRESS)
    p.add_argument("--backends", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        chosen = args.backends.split(",") if args.backends else None
        print("RESULT " + json.dumps(one(*args.one, batch=args.batch, chosen=chosen)), flush=True)
        return 0
    wanted = set(args.models.split(",")) if args.models else None
    rows = []
    for zoo in args.zoos.split(","):
        for entry in Z.ZOOS[zoo]:
            if wanted and entry.native not in wanted:
                continue
            size = refnets.counts(refnets.get_spec(entry.model, **dict(entry.layout + entry.select))).total
            groups = [[b] for b in backends.installed()] if size > args.split_above else [backends.installed()]
            for dtype in args.dtypes.split(","):
                parts = [_subprocess(zoo, entry.native, dtype, args.batch, group) for group in groups]
                failed = [part for part in parts if "error" in part]
                row = failed[0] if failed else parts[0]
                for part in parts[1:] if not failed else ():
                    row["max_rel"].update(part["max_rel"])
                    row["passed"] = row["passed"] and part["passed"]
                    row["seconds"] += part["seconds"]
                rows.append(row)
                figures = "  ".join(f"{b} {e:.1e}" for b, e in row.get("max_rel", {}).items())
                print(f"{zoo:6s} {entry.native:14s} {dtype}  {figures or 'ERROR'}  "
                      f"{row.get('seconds', 0):.1f}s", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "conformance.json"), "w") as handle:
        json.dump({"rows": rows}, handle, indent=1)
    with open(os.path.join(args.out, "conformance.md"), "w") as handle:
        handle.write(markdown(rows))
    return 0 if all(r.get("passed") for r in rows) else 1


def markdown(rows) -> str:
    order = list(backends.BACKENDS)
    chosen = sorted({b for r in rows for b in r.get("max_rel", {})}, key=order.index)
    lines = ["Worst max|out-zoo|/max|zoo| of each backend against the zoo's own model (224x224, "
             f"batch {rows[0].get('batch', 1) if rows else 1}, BatchNorm randomised in the zoo model).", "",
             "| zoo | zoo model | our model | dtype | " + " | ".join(chosen) + " | seconds |",
             "|---|---|---|---|" + "---|" * len(chosen) + "---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['zoo']} | {r['zoo_model']} | - | {r['dtype']} | " + " | ".join("error" for _ in chosen)
                         + " | - |")
            continue
        options = ", ".join(f"{k}={v}" for k, v in r["options"].items() if k != "num_classes")
        label = r["model"] + (f" ({options})" if options else "")
        cells = [f"{r['max_rel'][b]:.1e}" if b in r["max_rel"] else "-" for b in chosen]
        lines.append(f"| {r['zoo']} | {r['zoo_model']} | {label} | {r['dtype']} | " + " | ".join(cells)
                     + f" | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
