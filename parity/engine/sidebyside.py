"""Running one job per backend at the same time, each in a thread of its own.

Used where the backends can overlap: the localisation's capturing forwards
(compared node by node, `lockstep`), and every step of a run whose backends all
live in worker processes (the parent's thread only waits on a pipe). The threads
are daemons: an interrupted run does not wait for a framework's forward to end.
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, Optional


def run_side_by_side(jobs: Dict[str, Callable[[], None]],
                     on_done: Optional[Callable[[str, Optional[BaseException]], None]] = None,
                     on_interrupt: Optional[Callable[[], None]] = None) -> None:
    """Runs every job (name -> callable) in its own thread and waits for all.
    `on_done(name, error)` is called in the job's thread when it ends (error None
    if it returned). The first job's exception, in `jobs` order, is raised here
    once all have ended; an exception in the waiting thread (Ctrl-C) calls
    `on_interrupt` and is raised at once."""
    errors: Dict[str, BaseException] = {}

    def body(name: str, job: Callable[[], None]) -> None:
        error = None
        try:
            job()
        except BaseException as err:  # noqa: BLE001 (re-raised in the waiting thread)
            errors[name] = error = err
        finally:
            if on_done is not None:
                on_done(name, error)

    threads = [threading.Thread(target=body, args=(name, job), name=f"parity-{name}", daemon=True)
               for name, job in jobs.items()]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except BaseException:
        if on_interrupt is not None:
            on_interrupt()
        raise
    for name in jobs:
        if name in errors:
            raise errors[name]
