"""Node-by-node comparison while the backends run side by side.

The localisation used to capture every node's output in the reference, hold
them all, then capture every node in each other backend and compare: two full
sets of activations at once (ResNet50V2 at batch 2: 2 x 316 MiB). Here every
backend's capturing forward runs at the same time in a thread of its own
(`Backend.stream`) and hands each node to `NodeRendezvous.deposit`; once every
backend has handed in a node, each one's capture is compared with the
reference's and all are dropped. What is held is the lag between the threads.

Back-pressure: a thread holding more than `window` bytes that the others have not
reached yet waits in `deposit` -- unless every other thread is waiting or done,
so that one always runs: backends that run the nodes in different orders cannot
deadlock, they only hold more. A backend in a worker process waits the same way
(its parent-side thread stops reading, the pipe fills, the worker's sink blocks).
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, List, Optional, Sequence


from refnets.memory import release_freed_memory

from .metrics import Comparison, RecentComparisons

WINDOW_BYTES = 32 * 2 ** 20  # per thread: a few of ResNet50V2's largest nodes at batch 2
# Every thread allocates from a malloc arena of its own, and glibc keeps what a
# framework frees there for that arena alone: trimmed every this many compared
# nodes (resnet50v2 in one process: peak 1424 -> 1369 MiB at 16, no time measurable;
# 1342 at 4, the reference beside one backend at a time).
TRIM_EVERY = 4


class NodeRendezvous:
    """Where the threads of one localisation meet, node by node (see the module
    docstring). `deposit(party, path, array)` is each party's sink; `finish(party)`
    when its forward is over (or failed); `results[party][path]` the comparisons."""

    def __init__(self, parties: Sequence[str], reference: str, paths: Sequence[str], rtol: float, atol: float,
                 window: int = WINDOW_BYTES):
        self.parties: List[str] = list(parties)
        self.reference, self.window = reference, window
        self.expected = set(paths)
        self.comparisons = RecentComparisons(rtol, atol)
        self.cond = threading.Condition()
        self.pending: Dict[str, Dict[str, object]] = {}
        self.held = {party: 0 for party in self.parties}
        self.running, self.waiting = set(self.parties), set()
        self.done: set = set()
        self.closed = False  # the reference failed: nothing more can be compared
        self.results: Dict[str, Dict[str, Comparison]] = {p: {} for p in self.parties if p != reference}
        self.peak_held = 0  # bytes, all parties together: what the lag cost
        self.completed = 0

    def sink(self, party: str) -> Callable[[str, object], None]:
        return lambda path, array: self.deposit(party, path, array)

    def deposit(self, party: str, path: str, array) -> None:
        if path not in self.expected:
            raise KeyError(f"{party} handed in node {path!r}, which was not asked for")
        with self.cond:
            entry = self._add(party, path, array)
        if entry is not None:
            self._compare(path, entry)
            del entry
            self._trim_now_and_then()
        with self.cond:
            if self.waiting:  # only a thread held back by the window waits on the condition
                self.cond.notify_all()
            while not self.closed and self.held[party] > self.window and self._another_runs(party):
                self.waiting.add(party)
                self.cond.wait()
                self.waiting.discard(party)

    def _add(self, party: str, path: str, array) -> Optional[Dict[str, object]]:
        """Keeps the array (under the lock); the node's complete entry once every
        party that is still in has handed it in."""
        if self.closed or path in self.done or party not in self.parties:
            return None
        entry = self.pending.setdefault(path, {})
        if party in entry:
            return None
        entry[party] = array
        self.held[party] += getattr(array, "nbytes", 0)
        self.peak_held = max(self.peak_held, sum(self.held.values()))
        return self._take_if_complete(path)

    def _take_if_complete(self, path: str) -> Optional[Dict[str, object]]:
        entry = self.pending[path]
        if any(p not in entry for p in self.parties):
            return None
        del self.pending[path]
        self.done.add(path)
        for party, array in entry.items():
            self.held[party] -= getattr(array, "nbytes", 0)
        return entry

    def _compare(self, path: str, entry: Dict[str, object]) -> None:
        ref = entry[self.reference]
        for party, results in list(self.results.items()):  # a snapshot: `finish` may drop a party meanwhile
            if party in entry:
                results[path] = self.comparisons.compare(entry[party], ref)

    def _trim_now_and_then(self) -> None:
        with self.cond:
            self.completed += 1
            due = self.completed % TRIM_EVERY == 0
        if due:
            release_freed_memory()

    def _another_runs(self, party: str) -> bool:
        return any(p != party and p not in self.waiting for p in self.running)

    def finish(self, party: str, failed: bool = False) -> None:
        """`party`'s forward is over. A failed party drops out: the nodes that only
        waited for it are compared among the others; a failed reference ends the
        comparison (nothing can be compared with it)."""
        complete = []
        with self.cond:
            self.running.discard(party)
            if failed and party == self.reference:
                self.closed = True
                self.pending.clear()
            elif failed and party in self.parties:
                self.parties.remove(party)
                self.results.pop(party, None)
                for path, entry in list(self.pending.items()):
                    entry.pop(party, None)
                    taken = self._take_if_complete(path) if entry else None
                    if taken is not None:
                        complete.append((path, taken))
            self.cond.notify_all()
        for path, entry in complete:
            self._compare(path, entry)

    def close(self) -> None:
        """Stops the comparison at once (an interrupted run): waiting threads go on."""
        with self.cond:
            self.closed = True
            self.pending.clear()
            self.cond.notify_all()

    def compared_all(self, party: str) -> bool:
        """Whether every asked-for node of `party` was compared."""
        return not self.closed and party in self.results and len(self.results[party]) == len(self.expected)
