"""Backends in worker processes against one process: wall time, peak memory (per
process and in total) and torch's threads and forward time of a parity run.

    python -m benchmarks.workers [--models resnet18,resnet50v2] [--backends torch,mxnet,keras]
                                 [--repeats 2] [--layers] [--out benchmarks/results]

Three ways, each run as `python -m parity MODEL --backends ... --json ...` in a
fresh process, interleaved, repeated (the median is reported):
  in-process/before  one process, the torch thread fix disabled: what runs used to do
                     (importing mxnet leaves torch one OpenMP thread)
  in-process         one process (the default), torch's threads put back before it runs
  workers            --workers: every backend in its own worker process
Memory is sampled from /proc every 50 ms over the parity process and its
descendants: each process's peak (VmHWM) and the peak of their summed VmRSS (pages
shared between processes counted in each). RUSAGE_CHILDREN's ru_maxrss (the
largest single process) is recorded too. torch's thread count: read in the
parity process (in-process) or in a fresh process that imports only torch, as
a worker does. The machine's load is recorded before every run: other sessions
share this machine, so compare the ways within one repeat, as ratios.

Writes OUT/workers.json and OUT/workers.md. Imports no framework.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from ._common import ROOT, child_env, loadavg
from .proctree import descendants, status_kb

WAYS = ("in-process/before", "in-process", "workers")
# The parity process: torch's thread count reported at exit; for the "before" way
# the torch thread fix is made a no-op first.
CHILD = ("import sys, runpy, atexit\n"
         "if sys.argv[1] == 'before':\n"
         "    import refnets.backends.torch.run as run\n"
         "    run.ensure_threads = lambda: None\n"
         "def report():\n"
         "    torch = sys.modules.get('torch')\n"
         "    if torch is not None:\n"
         "        print('@@TORCH-THREADS@@', torch.get_num_threads(), file=sys.stderr)\n"
         "atexit.register(report)\n"
         "sys.argv = ['parity'] + sys.argv[2:]\n"
         "runpy.run_module('parity', run_name='__main__')\n")


def command(way: str, model: str, backends: str, layers: bool, out: str) -> List[str]:
    args = [model, "--backends", backends, "--quiet", "--json", out] + (["--layers"] if layers else [])
    before = "before" if way == "in-process/before" else "after"
    return [sys.executable, "-c", CHILD, before] + args + (["--workers"] if way == "workers" else ["--in-process"])


def measure(way: str, model: str, backends: str, layers: bool) -> dict:
    """One parity run of `way`, sampled."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "report.json")
        load = loadavg()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        proc = subprocess.Popen(command(way, model, backends, layers, out), cwd=ROOT, env=child_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peaks: Dict[int, int] = {}
        total = 0
        while proc.poll() is None:
            rss = 0
            for pid in descendants(proc.pid):
                rss += status_kb(pid, "VmRSS")
                peaks[pid] = max(peaks.get(pid, 0), status_kb(pid, "VmHWM"))
            total = max(total, rss)
            time.sleep(0.05)
        wall = time.perf_counter() - start
        stderr = proc.stderr.read()
        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0 or not os.path.exists(out):
            return {"error": f"exit {proc.returncode}: {stderr[-1500:]}"}
        with open(out) as handle:
            report = json.load(handle)
    threads = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("@@TORCH-THREADS@@")]
    by_size = sorted(peaks.values(), reverse=True)
    return {"way": way, "model": model, "wall_s": round(wall, 2), "loadavg_before": load,
            "passed": report["passed"],
            # With --layers the capturing forward is the forward (timed under localise).
            "torch_forward_s": (report["timings_s"].get("forward") or report["timings_s"]["localise"]).get("torch"),
            "forward_s": report["timings_s"].get("forward", {}), "import_s": report["timings_s"]["import"],
            "localise_s": report["timings_s"].get("localise", {}),
            "torch_threads_in_parity_process": threads[0] if threads else None,
            "processes": len(peaks), "peak_rss_mb_per_process": [round(kb / 1024) for kb in by_size],
            "peak_total_rss_mb": round(total / 1024),
            "rusage_children_maxrss_mb": round(maxrss / 1024) if maxrss > before else None}


def worker_torch_threads() -> int:
    """torch's threads in a process that imports only torch, as its worker does."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, env=child_env())
    return int(out.stdout.split()[-1])


def summarise(runs: List[dict]) -> Dict[str, dict]:
    table = {}
    for model in dict.fromkeys(r["model"] for r in runs if "model" in r):
        for way in WAYS:
            mine = [r for r in runs if r.get("model") == model and r.get("way") == way]
            if not mine:
                continue
            med = lambda key: round(statistics.median(r[key] for r in mine if r[key] is not None), 3)  # noqa: E731
            table[f"{model} {way}"] = {
                "wall_s": med("wall_s"), "torch_forward_s": med("torch_forward_s"),
                "peak_total_rss_mb": med("peak_total_rss_mb"),
                "largest_process_mb": round(statistics.median(r["peak_rss_mb_per_process"][0] for r in mine)),
                "per_process_mb": mine[0]["peak_rss_mb_per_process"],
                "torch_threads": mine[0]["torch_threads_in_parity_process"], "runs": len(mine)}
    return table


def markdown(result: dict) -> str:
    lines = [f"# Backends in workers vs one process ({result['backends']}, --layers: {result['layers']})", "",
             f"python {result['python']}; {result['cores']} cores; load before each run: "
             f"{', '.join(str(r.get('loadavg_before', ['?'])[0]) for r in result['runs'])}", "",
             "| run | wall s | torch forward s | torch threads | peak total RSS MB | largest process MB | "
             "per process MB |", "|---|---|---|---|---|---|---|"]
    for key, row in result["summary"].items():
        threads = row["torch_threads"] if row["torch_threads"] is not None else \
            f"{result['worker_torch_threads']} (worker)"
        lines.append(f"| {key} | {row['wall_s']} | {row['torch_forward_s']} | {threads} | "
                     f"{row['peak_total_rss_mb']} | {row['largest_process_mb']} | {row['per_process_mb']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet18,resnet50v2")
    p.add_argument("--backends", default="torch,mxnet,keras")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--layers", action="store_true", help="localise every node too (the per-node captures)")
    p.add_argument("--ways", default=",".join(WAYS))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args(argv)
    runs = []
    for repeat in range(args.repeats):
        for model in args.models.split(","):
            for way in args.ways.split(","):
                run = measure(way, model, args.backends, args.layers)
                run.update(repeat=repeat, way=way, model=model)
                print(json.dumps(run), file=sys.stderr, flush=True)
                runs.append(run)
    good = [r for r in runs if "error" not in r]
    result = {"python": sys.version.split()[0], "executable": sys.executable, "cores": len(os.sched_getaffinity(0)),
              "backends": args.backends, "layers": args.layers, "worker_torch_threads": worker_torch_threads(),
              "summary": summarise(good), "runs": runs}
    os.makedirs(args.out, exist_ok=True)
    suffix = "_layers" if args.layers else ""
    with open(os.path.join(args.out, f"workers{suffix}.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    with open(os.path.join(args.out, f"workers{suffix}.md"), "w") as handle:
        handle.write(markdown(result))
    print(markdown(result))
    return 0 if len(good) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
