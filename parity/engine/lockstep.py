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

Who compares: the thread that completes a node is the one that was behind, so it
queues the node when another thread is still running (or has ended and helps)
and goes on with its forward. The threads ahead compare what is queued before
going on and instead of waiting, and a thread whose forward has ended compares
what the others queue until they end too: the slowest backend's forward carries
no comparisons (resnet50v2, one process: Keras's thread had compared 0.55 s of
nodes while torch's waited 1.3 s; the pairs took 1.06-1.11 s and 1.30-1.42 s,
now 0.82-0.88 s and 1.08-1.25 s). The queue holds at most `window` bytes: beyond
that the thread that queues compares too.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple


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
        self.ready: Deque[Tuple[str, Dict[str, object]]] = deque()  # complete nodes not compared yet
        self.ready_bytes = 0
        self.peak_held = 0  # bytes, all parties together and the queue: what the lag cost
        self.completed = 0

    def sink(self, party: str) -> Callable[[str, object], None]:
        return lambda path, array: self.deposit(party, path, array)

    def deposit(self, party: str, path: str, array) -> None:
        if path not in self.expected:
            raise KeyError(f"{party} handed in node {path!r}, which was not asked for")
        with self.cond:
            entry = self._add(party, path, array)
            if entry is not None and any(p != party for p in self.running | self.waiting):
                self._queue(path, entry)  # a thread ahead, or one that helps, compares it (module docstring)
                entry = None
            if self.waiting:  # only a waiting thread (held back, or helping) waits on the condition
                self.cond.notify_all()
        if entry is not None:
            self._compare(path, entry)
        self._compare_while(lambda: self.ready_bytes > self.window or self.held[party] > 0)
        self._wait_while_ahead(party)

    def _wait_while_ahead(self, party: str) -> None:
        """Back-pressure (module docstring)."""
        self._compare_queued_until(
            party, lambda: self.closed or self.held[party] <= self.window or not self._another_runs(party))

    def _compare_queued_until(self, party: str, done: Callable[[], bool]) -> None:
        """Compares queued nodes until `done()` (asked under the lock); while none is
        queued, waits on the condition as `party` (in `waiting`)."""
        while True:
            with self.cond:
                if done():
                    return
                job = self._pop_ready()
                if job is None:
                    self.waiting.add(party)
                    self.cond.wait()
                    self.waiting.discard(party)
                    continue
            self._compare(*job)

    def _queue(self, path: str, entry: Dict[str, object]) -> None:
        self.ready.append((path, entry))
        self.ready_bytes += _nbytes(entry)
        self.peak_held = max(self.peak_held, sum(self.held.values()) + self.ready_bytes)

    def _pop_ready(self) -> Optional[Tuple[str, Dict[str, object]]]:
        """The oldest queued node (under the lock), or None."""
        if not self.ready:
            return None
        path, entry = self.ready.popleft()
        self.ready_bytes -= _nbytes(entry)
        return path, entry

    def _compare_while(self, condition: Callable[[], bool]) -> None:
        while True:
            with self.cond:
                job = self._pop_ready() if condition() else None
            if job is None:
                return
            self._compare(*job)

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
        del ref
        entry.clear()  # dropped here, wherever the entry came from
        self._trim_now_and_then()

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
                self.ready.clear()
                self.ready_bytes = 0
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
        self._compare_while(lambda: not self.running)  # the last one: what is left

    def help_until_the_others_end(self, party: str) -> None:
        """Called by a thread after `finish`ing its party well: it compares the nodes
        the others queue until every party has finished (or the comparison is closed).
        It waits in `waiting` too: having finished, it is no longer `running`, so it
        holds nobody back."""
        self._compare_queued_until(party, lambda: self.closed or not (self.running or self.ready))

    def close(self) -> None:
        """Stops the comparison at once (an interrupted run): waiting threads go on."""
        with self.cond:
            self.closed = True
            self.pending.clear()
            self.ready.clear()
            self.ready_bytes = 0
            self.cond.notify_all()

    def compared_all(self, party: str) -> bool:
        """Whether every asked-for node of `party` was compared."""
        return not self.closed and party in self.results and len(self.results[party]) == len(self.expected)


def _nbytes(entry: Dict[str, object]) -> int:
    return sum(getattr(array, "nbytes", 0) for array in entry.values())
