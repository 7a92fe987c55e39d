"""A fuzzing campaign: N seeded cases in every chosen backend and dtype, each failure
shrunk, saved as a reproducer (checked by running it again) and classified."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from refnets import specfile

from . import known, repro
from .generate import case
from .run import Problem, Tally, Verdict, evaluate, run_problem
from .shrink import describe, shrink


@dataclass
class Finding:
    case_label: str
    verdict: Verdict
    shrunk: Problem
    shrunk_verdict: Verdict
    bug: Optional[known.KnownBug]
    directory: Optional[str]
    reproduced: Optional[bool]

    @property
    def explained(self) -> bool:
        return self.bug is not None

    def line(self) -> str:
        where = self.directory or "(not saved: --out not given or --shrink-limit reached)"
        cls = f"known: {self.bug.key}" if self.bug else "UNEXPLAINED"
        return (f"{cls:<28} {self.verdict.backend:<7} {self.verdict.dtype:<8} {self.case_label:<18} "
                f"{self.shrunk_verdict.status} ({self.shrunk_verdict.detail[:60]}); shrunk to "
                f"{describe(self.shrunk)} -> {where}")


@dataclass
class Campaign:
    seed: int
    count: int
    labels: Sequence[str]
    dtypes: Sequence[str]
    out: Optional[str]
    do_shrink: bool = True
    shrink_limit: int = 20  # failures shrunk and saved; later ones are counted and classified as found
    tally: Tally = field(default_factory=Tally)
    findings: List[Finding] = field(default_factory=list)
    seconds: float = 0.0
    _saved: dict = field(default_factory=dict)

    @property
    def unexplained(self) -> List[Finding]:
        return [f for f in self.findings if not f.explained]

    def run(self, progress: Callable[["Campaign", int], None] = lambda c, i: None) -> "Campaign":
        start = time.perf_counter()
        for index in range(self.count):
            fuzz_case = case(self.seed, index)
            problem = Problem(fuzz_case.model, fuzz_case.batch, fuzz_case.weight_seed, fuzz_case.input_seed)
            verdicts = run_problem(problem, self.labels, self.dtypes)
            self.tally.add(verdicts)
            for verdict in verdicts:
                if verdict.failed:
                    self.findings.append(self.investigate(fuzz_case.label, problem, verdict))
            self.seconds = time.perf_counter() - start
            progress(self, index + 1)
        return self

    def investigate(self, label: str, problem: Problem, verdict: Verdict) -> Finding:
        """Shrink a failure, classify it, and save it (once per distinct shrunk spec)."""
        def check(candidate: Problem) -> Verdict:
            return evaluate(candidate, verdict.backend, verdict.dtype)

        if len(self.findings) >= self.shrink_limit:
            return Finding(label, verdict, problem, verdict, known.classify(problem, verdict), None, None)
        shrunk = shrink(problem, check, verdict) if self.do_shrink else problem
        shrunk_verdict = check(shrunk)
        if not verdict.same_failure(shrunk_verdict):  # a flaky failure: keep the original
            shrunk, shrunk_verdict = problem, verdict
        bug = known.classify(shrunk, shrunk_verdict)
        directory, reproduced = self.save(label, shrunk, shrunk_verdict, bug)
        return Finding(label, verdict, shrunk, shrunk_verdict, bug, directory, reproduced)

    def save(self, label: str, problem: Problem, verdict: Verdict, bug):
        if self.out is None:
            return None, None
        key = (verdict.backend, verdict.dtype, specfile.dumps(problem.model), problem.batch)
        if key in self._saved:
            return self._saved[key]
        name = f"{verdict.backend.replace(':', '-')}-{verdict.dtype}-{label.replace(' ', '-')}"
        directory = os.path.join(self.out, name)
        finding = {"case": label, "class": f"known: {bug.key}" if bug else "unexplained",
                   "known_bug": bug.summary if bug else None}
        repro.save(directory, problem, verdict, finding)
        reproduced = verdict.same_failure(repro.rerun(directory))
        self._saved[key] = (directory, reproduced)
        return directory, reproduced


def summary(campaign: Campaign) -> str:
    """The summary table: one row per backend and dtype, then every finding."""
    head = (f"{'backend':<10} {'dtype':<8} {'agree':>7} {'unsupported':>12} {'disagree':>9} {'error':>6} "
            f"{'worst agreeing error':>21}")
    rows = [head, "-" * len(head)]
    for (label, dtype), row in campaign.tally.counts.items():
        worst = campaign.tally.worst.get((label, dtype))
        rows.append(f"{label:<10} {dtype:<8} {row['agree']:>7} {row['unsupported']:>12} {row['disagree']:>9} "
                    f"{row['error']:>6} {'-' if worst is None else f'{worst:.2e}':>21}")
    rows.append(f"{campaign.tally.cases} case(s) of seed {campaign.seed} in {campaign.seconds:.1f} s; "
                f"{len(campaign.findings)} finding(s), {len(campaign.unexplained)} unexplained")
    rows.extend(finding.line() for finding in campaign.findings)
    return "\n".join(rows)
