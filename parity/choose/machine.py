"""The machine a measurement ran on, and how busy it was meanwhile.

`describe()`: CPU model, cores, memory, OS, Python. `LoadMeter`: the load
average before and after a measurement, and the CPU time the rest of the
machine used during it (/proc/stat's busy time minus the measured process's
own CPU time), in cores. A figure taken while others used more than
BUSY_CORES cores is flagged as taken under load: on a shared machine it is
slower than the same code alone would be, by an unknown amount.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Dict, Optional

BUSY_CORES = 0.5  # others' average CPU use above which a figure is flagged


def _first_line_with(path: str, key: str) -> Optional[str]:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def describe() -> Dict[str, object]:
    memory = _first_line_with("/proc/meminfo", "MemTotal")
    return {"cpu": _first_line_with("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "memory_gib": round(int(memory.split()[0]) / 2 ** 20, 1) if memory else None,
            "os": platform.platform(), "python": platform.python_version()}


def busy_seconds() -> Optional[float]:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def loadavg() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


@dataclass
class Load:
    loadavg_before: Optional[float] = None
    loadavg_after: Optional[float] = None
    others_cores: Optional[float] = None  # average CPU use of everything else, in cores
    seconds: float = 0.0

    @property
    def under_load(self) -> bool:
        return self.others_cores is not None and self.others_cores > BUSY_CORES

    def to_json(self) -> Dict[str, object]:
        return {"loadavg_before": self.loadavg_before, "loadavg_after": self.loadavg_after,
                "others_cores": self.others_cores, "seconds": round(self.seconds, 3), "under_load": self.under_load}


class LoadMeter:
    """meter = LoadMeter(); meter.start(own_cpu); ...; load = meter.stop(own_cpu)
    with `own_cpu` the CPU seconds used so far by the processes being measured
    (a worker's, from its `resources`; 0 when only this process is measured)."""

    def start(self, own_cpu: float) -> None:
        self._before = (loadavg(), busy_seconds(), own_cpu, time.monotonic(), os.times())

    def stop(self, own_cpu: float) -> Load:
        avg, busy, own, began, times = self._before
        wall = time.monotonic() - began
        now, busy_now = os.times(), busy_seconds()
        ours = (now.user + now.system) - (times.user + times.system) + (own_cpu - own)
        others = None
        if busy is not None and busy_now is not None and wall > 0:
            others = round(max(0.0, (busy_now - busy - ours) / wall), 2)
        return Load(avg, loadavg(), others, wall)
