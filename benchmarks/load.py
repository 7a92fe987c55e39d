"""How busy the machine was while a figure was taken, so that a figure measured
beside a noisy neighbour is marked and never published.

The load that matters is CPU time that *other* processes used: all CPUs' busy
time from /proc/stat (user, nice, system, irq, softirq, steal) minus this
process's and its waited-for children's CPU time (`os.times`; every benchmark
worker is a child that is waited for). As a fraction of the machine's capacity
(wall time x CPUs) it is 0 on an idle machine and 1 when others kept every CPU
busy. The load average is recorded beside it (it counts our own processes too,
so it is context, not the criterion).

A section is *under load* when others used more than `THRESHOLD` of the CPUs in
the second before it started or during any of its measurements (each worker
process) or the section as a whole. Imports no framework.
"""

from __future__ import annotations

import os
import time
from typing import List, Optional

THRESHOLD = 0.10  # others' share of the machine's CPU capacity


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_busy_s() -> Optional[float]:
    """Busy CPU seconds of the whole machine since boot (every CPU), or None
    where there is no /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class Meter:
    """Others' CPU time between `Meter()` and `stop()`."""

    def __init__(self):
        self.wall, self.busy, self.own = time.perf_counter(), machine_busy_s(), own_cpu_s()
        self.loadavg_start = loadavg()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.wall
        busy = machine_busy_s()
        own = own_cpu_s() - self.own
        if busy is None or self.busy is None or wall <= 0:
            return {"wall_s": wall, "others_cpu_s": None, "others_frac": None,
                    "loadavg_start": self.loadavg_start, "loadavg_end": loadavg()}
        others = max(0.0, busy - self.busy - own)
        return {"wall_s": round(wall, 3), "others_cpu_s": round(others, 3),
                "others_frac": round(others / (wall * cpus()), 4),
                "loadavg_start": self.loadavg_start, "loadavg_end": loadavg()}


def probe(seconds: float = 1.0) -> dict:
    """Others' share of the CPUs over `seconds` of this process sleeping."""
    meter = Meter()
    time.sleep(seconds)
    return meter.stop()


def judge(before: dict, during: dict, workers: List[dict]) -> dict:
    """The section's load record: the worst share seen, and whether it is under load."""
    shares = [r.get("others_frac") for r in [before, during] + workers]
    shares = [s for s in shares if s is not None]
    worst = max(shares) if shares else None
    return {"before": before, "during": during, "workers_max_frac": max(
                (w["others_frac"] for w in workers if w.get("others_frac") is not None), default=None),
            "worst_frac": worst, "threshold": THRESHOLD, "measured": worst is not None,
            "under_load": worst is not None and worst > THRESHOLD}


def describe(record: Optional[dict]) -> str:
    """One phrase for a table: others' worst share, and the verdict."""
    if not record or not record.get("measured"):
        return "machine load not measured"
    share = f"others used at most {record['worst_frac']:.0%} of the CPUs"
    return f"**under load** ({share}; threshold {record['threshold']:.0%})" if record["under_load"] else share
