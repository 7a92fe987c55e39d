"""torchvision conformance table: the worst relative error of every backend against
every torchvision model we list, float32 and float64, printed as markdown.

    python -m benchmarks.torchvision_conformance [--models resnet18,vgg11] [--backends torch,keras]
        [--dtypes float32,float64] [--input-shape 3,224,224] [--batch 1]
        [--python mxnet=/path/to/python] [--out benchmarks/results]

Each (model, dtype) runs `parity.run_against(MODEL, "torchvision")` in a fresh
subprocess: torchvision's own model (its own initialisation, BatchNorm randomised)
is the reference; the backends that share an interpreter share the subprocess,
except for models above 100M parameters (the VGGs), which run one backend per
subprocess. `--python NAME=PATH` runs that backend in another interpreter, which must
have torchvision and the backend's framework (e.g. MXNet 1.9.1 needs numpy < 1.24).
Error: max|out - torchvision| / max|torchvision| over the batch's logits. Writes
torchvision_conformance.json and .md to --out (with the machine's load and the
versions) and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from ._common import ROOT, child_env

MARK = "TORCHVISION-CONFORMANCE "
SPLIT_ABOVE = 100e6


def one(native: str, dtype: str, chosen, batch: int, input_shape) -> dict:
    from parity import run_against

    start = time.perf_counter()
    result = run_against(native, "torchvision", backends=chosen, batch=batch, dtype=dtype, input_shape=input_shape)
    return {"model": native, "dtype": dtype, "passed": result.passed, "versions": result.versions,
            "max_rel": {b: r.comparison.max_rel for b, r in result.results.items() if r.comparison},
            "seconds": time.perf_counter() - start}


def run_one(python: str, native: str, dtype: str, chosen, batch: int, input_shape) -> dict:
    cmd = [python, "-m", "benchmarks.torchvision_conformance", "--one", native, dtype, "--backends", ",".join(chosen),
           "--batch", str(batch)] + (["--input-shape", ",".join(map(str, input_shape))] if input_shape else [])
    done = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith(MARK)), None)
    if line is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"model": native, "dtype": dtype, "error": f"exit {done.returncode}: " + " | ".join(tail),
                "max_rel": {}, "passed": False, "seconds": 0.0, "versions": {}}
    return json.loads(line[len(MARK):])


def groups(native: str, chosen, pythons):
    """(interpreter, backends) per subprocess."""
    import refnets
    from refnets import zoo_import as Z

    entry, options = Z.resolve("torchvision", native)
    split = refnets.counts(refnets.get_spec(entry.model, **options)).total > SPLIT_ABOVE
    own = [b for b in chosen if b not in pythons]
    out = [(sys.executable, [b]) for b in own] if split else ([(sys.executable, own)] if own else [])
    return out + [(pythons[b], [b]) for b in chosen if b in pythons]


def markdown(rows, chosen, dtypes, meta) -> str:
    head = "| model | " + " | ".join(f"{b} {d}" for b in chosen for d in dtypes) + " | seconds |"
    lines = [f"Worst max|out - torchvision| / max|torchvision| per backend (input {meta['input']}, batch "
             f"{meta['batch']}, BatchNorm randomised in torchvision's model; load average "
             f"{meta['load_before'][0]:.1f} before, {meta['load_after'][0]:.1f} after). Versions: {meta['versions']}.",
             "", head, "|---|" + "---|" * (len(chosen) * len(dtypes) + 1)]
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    for model, parts in by_model.items():
        cells = []
        for b in chosen:
            for d in dtypes:
                hit = [p for p in parts if p["dtype"] == d and (b in p["max_rel"] or p.get("backends") == [b])]
                value = next((p["max_rel"][b] for p in hit if b in p["max_rel"]), None)
                cells.append(f"{value:.1e}" if value is not None else ("error" if hit else "-"))
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {sum(p['seconds'] for p in parts):.0f} |")
    return "\n".join(lines) + "\n"


def versions_by_interpreter(rows) -> str:
    """One line per interpreter: the versions its subprocesses reported."""
    seen = {}
    for row in rows:
        entry = seen.setdefault(row["python"], ({}, set()))
        entry[0].update(row.get("versions", {}))
        entry[1].update(row["backends"])
    return "; ".join(f"{'+'.join(sorted(names))} in {python}: "
                     + ", ".join(f"{k} {v}" for k, v in sorted(found.items()) if k not in ("refnets", "platform"))
                     for python, (found, names) in seen.items())


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="comma-separated torchvision names (default: every one we list)")
    p.add_argument("--backends", help="default: every installed framework backend, plus those of --python")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--input-shape", help="C,H,W (default: 3,224,224, AlexNet's too)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--python", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--one", nargs=2, metavar=("MODEL", "DTYPE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
    if args.one:
        print(MARK + json.dumps(one(*args.one, args.backends.split(","), args.batch, shape)), flush=True)
        return 0
    from refnets import backends
    from refnets import zoo_import as Z

    pythons = dict(item.split("=", 1) for item in args.python)
    chosen = args.backends.split(",") if args.backends else backends.installed() + [b for b in pythons
                                                                                      if b not in backends.installed()]
    models = args.models.split(",") if args.models else [e.native for e in Z.ZOOS["torchvision"]]
    dtypes = args.dtypes.split(",")
    meta = {"load_before": os.getloadavg(), "input": "x".join(map(str, shape or (3, 224, 224))), "batch": args.batch}
    rows = []
    for native in models:
        for dtype in dtypes:
            for python, group in groups(native, chosen, pythons):
                row = dict(run_one(python, native, dtype, group, args.batch, shape), backends=group, python=python)
                rows.append(row)
                figures = "  ".join(f"{b} {e:.1e}" for b, e in row["max_rel"].items()) or row.get("error", "")
                print(f"{native:12s} {dtype}  {figures}  {row['seconds']:.1f}s", file=sys.stderr, flush=True)
    meta["load_after"] = os.getloadavg()
    meta["versions"] = versions_by_interpreter(rows)
    text = markdown(rows, chosen, dtypes, meta)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "torchvision_conformance.json"), "w") as handle:
        json.dump({"meta": meta, "rows": rows}, handle, indent=1)
    with open(os.path.join(args.out, "torchvision_conformance.md"), "w") as handle:
        handle.write(text)
    print(text)
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
