"""A process and its descendants, read from /proc: their ids, and a sampler of
their summed resident memory (for runs whose backends live in worker processes,
where one process's ru_maxrss is not the run's memory)."""

from __future__ import annotations

import os
import threading
import time
from typing import Dict, List


def status_kb(pid: int, field: str) -> int:
    """A `/proc/PID/status` field in KiB (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> List[int]:
    """`root` and every process below it (from /proc/*/stat parent ids)."""
    parents: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def tree_rss_mb(root: int) -> float:
    """Summed VmRSS of `root` and its descendants, MiB (pages shared between
    processes count in each)."""
    return sum(status_kb(pid, "VmRSS") for pid in descendants(root)) / 1024.0


class TreeSampler:
    """Samples the summed RSS of this process and its descendants every `interval`
    seconds in a daemon thread; `peak_mb` is the highest sum seen so far."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak_mb = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        root = os.getpid()
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, tree_rss_mb(root))
            time.sleep(self.interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb
