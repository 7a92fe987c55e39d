"""Performance of refnets and the parity harness, side by side, in one run.

    python -m benchmarks [--quick] [--only latency,parity,startup] [--out DIR] [--update-readme]

Sections (every measurement in fresh processes; medians over repeated runs after
warm-up):
  latency  1. forward latency of our models vs the frameworks' zoo models
           (224x224, batch 1 and 16, inference mode): ratio ours/zoo, target <= 1.05
  parity   2. the parity run (resnet18, resnet50v2; torch, mxnet, keras; localisation
           forced) against each framework alone: harness overhead, target <= 10 %
           3. its peak RSS against the frameworks' baseline + the three models' weights,
              target <= 1.3x
  startup  4. `python -m parity --help` and `import refnets`: wall time, no framework loaded

Writes DIR/benchmarks.json and DIR/benchmarks.md (default benchmarks/results). With
--only, the other sections are kept from an existing benchmarks.json. --quick uses
fewer repeats (a smoke test, not figures to quote). --update-readme replaces the
results in README.md between its `<!-- benchmarks:start -->` / `end` markers.

Machine load (benchmarks/load.py): the CPU share other processes used is recorded
before and during every section and around every worker; a section where it
exceeded 10 % is marked "under load" in the tables, and --update-readme then
refuses to write (exit 1) and says which sections to run again.
--python torch=PATH runs that framework's latency worker in another venv (the
torch rows against torchvision, which only the modern stack has).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

from . import harness_report, latency, load, startup
from ._common import LOAD_LOG, ROOT, loadavg

SECTIONS = {"latency": latency, "parity": harness_report, "startup": startup}
ALIASES = {"memory": "parity", "harness": "parity"}
README_START, README_END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _machine() -> dict:
    try:
        with open("/proc/meminfo") as handle:
            mem_kb = int(handle.readline().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = None
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "memory_gib": None if mem_kb is None else round(mem_kb / 2 ** 20, 1),
            "python": platform.python_version()}


def verdicts(data: dict) -> list:
    out = []
    for name, module in SECTIONS.items():
        section = data["sections"].get(name)
        if section:
            busy = under_load(section)
            out += [dict(v, section=name, under_load=busy) for v in module.verdicts(section)]
    return out


def under_load(section: dict) -> bool:
    return bool(section.get("load", {}).get("under_load"))


def _met(v: dict) -> str:
    if v.get("under_load"):
        return "**under load**: not a figure to quote"
    return "yes" if v["met"] else "**no**"


def _value(v: dict) -> str:
    value = v["value"]
    if isinstance(value, float):
        return f"{value:.1%}" if v.get("percent") else f"{value:.3f}"
    return str(value)


def markdown(data: dict) -> str:
    meta = data["meta"]
    lines = [
        "## Benchmarks",
        "",
        f"`python -m benchmarks{' --quick' if meta['quick'] else ''}` on {meta['machine']['cpus']} CPU cores, "
        f"{meta['machine']['memory_gib']} GiB, {meta['machine']['processor']}, Python {meta['machine']['python']}; "
        f"{meta['date']}; load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}; "
        f"{meta['wall_s'] / 60:.1f} min. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()) + ".",
        "",
        "| target | measured | target | met | also |",
        "|---|---|---|---|---|",
    ]
    for v in verdicts(data):
        lines.append(f"| {v['what']} | {_value(v)} | {v['target']} | {_met(v)} | {v.get('also', '')} |")
    lines.append("")
    for name, module in SECTIONS.items():
        section = data["sections"].get(name)
        if section:
            body = module.markdown(section)
            body[2:2] = [f"Machine load during this section: {load.describe(section.get('load'))}.", ""]
            lines += body
    return "\n".join(lines).rstrip() + "\n"


def update_readme(text: str) -> bool:
    path = os.path.join(ROOT, "README.md")
    with open(path) as handle:
        readme = handle.read()
    if README_START not in readme or README_END not in readme:
        log(f"README.md has no {README_START} ... {README_END} markers: not updated")
        return False
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    body = text.split("\n", 2)[2] if text.startswith("## ") else text  # the README has its own heading
    with open(path, "w") as handle:
        handle.write(head + README_START + "\n" + body.strip() + "\n" + README_END + tail)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats: a smoke test")
    p.add_argument("--only", help="comma-separated sections: latency, parity (or memory), startup")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--update-readme", action="store_true", help="put the tables into README.md")
    p.add_argument("--python", action="append", default=[], metavar="FRAMEWORK=PATH",
                   help="run that framework's latency worker in another interpreter (e.g. "
                        "torch=/path/venv/bin/python, a venv with torchvision); repeatable")
    args = p.parse_args(argv)
    for item in args.python:
        framework, _, path = item.partition("=")
        if framework not in latency.SETUP or not path:
            p.error(f"--python takes FRAMEWORK=PATH with FRAMEWORK one of {', '.join(latency.SETUP)}, got {item!r}")
        if not os.access(path, os.X_OK):
            p.error(f"--python {item}: {path} is not an executable")
        latency.PYTHONS[framework] = path
    chosen = list(SECTIONS)
    if args.only:
        chosen = []
        for name in (s.strip() for s in args.only.split(",") if s.strip()):
            name = ALIASES.get(name, name)
            if name not in SECTIONS:
                p.error(f"unknown section {name!r}; choose from {', '.join(SECTIONS)} (or memory)")
            if name not in chosen:
                chosen.append(name)

    json_path = os.path.join(args.out, "benchmarks.json")
    data = {"meta": {}, "sections": {}}
    if args.only and os.path.exists(json_path):
        with open(json_path) as handle:
            data = json.load(handle)
    start = time.perf_counter()
    load_start = loadavg()
    for name in chosen:
        data["sections"][name] = run_section(name, args.quick)
    versions = {}
    for framework_versions in data["sections"].get("latency", {}).get("versions", {}).values():
        versions.update({k: v for k, v in framework_versions.items() if k not in ("threads", "python")})
    import numpy

    versions["numpy"] = numpy.__version__
    data["meta"] = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "quick": args.quick,
                    "sections_run": chosen, "machine": _machine(), "versions": versions,
                    "loadavg_start": load_start, "loadavg_end": loadavg(), "wall_s": time.perf_counter() - start}
    data["verdicts"] = verdicts(data)
    os.makedirs(args.out, exist_ok=True)
    with open(json_path, "w") as handle:
        json.dump(data, handle, indent=1)
    text = markdown(data)
    with open(os.path.join(args.out, "benchmarks.md"), "w") as handle:
        handle.write(text)
    log(f"wrote {json_path} and benchmarks.md ({data['meta']['wall_s'] / 60:.1f} min)")
    for v in data["verdicts"]:
        status = "LOAD" if v["under_load"] else "ok  " if v["met"] else "MISS"
        log(f"  {status} {v['what']}: {_value(v)} (target {v['target']})")
    if args.update_readme:
        busy = [name for name, section in data["sections"].items() if under_load(section)]
        if busy:
            log(f"README.md NOT updated: section(s) {', '.join(busy)} ran under load (other processes used more "
                f"than {load.THRESHOLD:.0%} of the CPUs); run them again on a quiet machine: "
                f"python -m benchmarks --only {','.join(busy)} --update-readme")
            return 1
        update_readme(text)
        log("README.md updated")
    return 0


def run_section(name: str, quick: bool) -> dict:
    """One section, with the machine's load before (a one-second probe) and during it."""
    before = load.probe(1.0)
    LOAD_LOG.clear()
    meter = load.Meter()
    t = time.perf_counter()
    section = SECTIONS[name].run(quick, log)
    section["wall_s"] = time.perf_counter() - t
    section["load"] = load.judge(before, meter.stop(), list(LOAD_LOG))
    log(f"{name}: {section['wall_s']:.0f}s; {load.describe(section['load'])}".replace("**", ""))
    return section


if __name__ == "__main__":
    raise SystemExit(main())
