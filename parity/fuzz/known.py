"""Known framework bugs: a finding that matches one is explained, anything else is ours
to fix (in the backend) until shown to be the framework's.

Each entry says which backend and dtypes it affects, which (shrunk) specs it
matches, what the framework does wrong, and where its reproducer lives in the
repository (a directory written by `repro.save`, with a standalone script in the
framework alone). The README lists this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from refnets import spec as S

from .run import Problem, Verdict


@dataclass(frozen=True)
class KnownBug:
    key: str
    backend: str
    dtypes: Tuple[str, ...]
    summary: str
    matches: Callable[[Problem, Verdict], bool]
    reproducer: str  # path in the repository

    def explains(self, problem: Problem, verdict: Verdict) -> bool:
        return (verdict.backend.partition(":")[0] == self.backend and verdict.dtype in self.dtypes
                and self.matches(problem, verdict))


def _nodes(problem: Problem):
    return [node for _, node in S.walk(problem.model.root)]


KNOWN_BUGS: Tuple[KnownBug, ...] = ()


def classify(problem: Problem, verdict: Verdict, table: Tuple[KnownBug, ...] = None) -> Optional[KnownBug]:
    """The known bug that explains `verdict` on the (shrunk) `problem`, or None: ours."""
    for bug in KNOWN_BUGS if table is None else table:
        if bug.explains(problem, verdict):
            return bug
    return None
