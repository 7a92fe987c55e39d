"""The report: a table for people, a JSON document for machines."""

from __future__ import annotations

import json
from typing import List

from ..engine.session import ParityResult
from ..outputs import write_atomic
from .tables import device_lines, strict, table

PHASES = ("import", "build", "weights", "forward", "compare", "localise")


def format_value(value) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def _summary_rows(result: ParityResult):
    rows = []
    for name in [b for b in result.backends if b != result.reference]:
        if name in result.failures:
            rows.append([name, "-", "-", "-", "-", "FAILED (see below)"])
            continue
        if name not in result.results:
            continue
        c = result.results[name].comparison
        top1 = "-" if c.top1 is None else f"{c.top1:.0%}"
        verdict = "PASS" if c.passed else ("FAIL (NaN/Inf)" if not c.finite else "FAIL")
        rows.append([f"{name} vs {result.reference}", f"{c.max_abs:.3e}", f"{c.max_rel:.3e}",
                     f"{c.mean_abs:.3e}", top1, verdict])
    return rows


def _timing_rows(result: ParityResult):
    """Seconds per backend and phase; "-" where a backend did not run that phase."""
    rows = []
    for name in result.backends:
        seconds = [result.timings.get(p, {}).get(name) for p in PHASES]
        rows.append([name] + ["-" if s is None else f"{s:.2f}" for s in seconds])
    return rows


def _timing_note(result: ParityResult) -> List[str]:
    forwards = result.timings.get("forward", {})
    if any(name not in forwards for name in result.timings.get("localise", {})):
        return ["(forward \"-\": that backend's forward was its capturing one, compared node by node: under localise)"]
    return []


def failure_lines(result: ParityResult) -> List[str]:
    """Each failed backend's message (the signal or status, its stderr's last lines)."""
    failures = getattr(result, "failures", {})
    lines = []
    original = result.backends[0]
    if original in failures and result.reference != original:
        lines.append(f"the reference {original} failed: the others are compared with {result.reference}")
    elif original in failures:
        lines.append(f"the reference {original} failed and fewer than two backends remain: nothing was compared")
    for name, message in failures.items():
        first, *rest = message.splitlines()
        lines.append(f"{name}: FAILED: {first}")
        lines += ["  " + line for line in rest]
    return lines


def verdict(result: ParityResult) -> str:
    if not getattr(result, "failures", None):
        return "ALL AGREE" if result.passed else "DISAGREEMENT"
    failed = ", ".join(result.failures)
    compared = [r for r in result.results.values() if r.comparison is not None]
    rest = ("" if not compared else "; the others all agree" if result.agreed
            else "; and a DISAGREEMENT among the others")
    return f"INCOMPLETE: {failed} failed{rest}"


def localisation_lines(result: ParityResult, all_nodes: bool) -> List[str]:
    lines = []
    localised_against = getattr(result, "localised_against", None)  # the training runs' results share these lines
    against = localised_against or result.reference
    if localised_against:
        lines.append(f"(per node against the spec built in {against}: your own model has no captures by spec path)")
    for name in [b for b in result.backends[1:] if b in result.results]:
        loc = result.results[name].localisation
        if loc is None:
            continue
        first = loc.first_divergent
        if first is None:
            lines.append(f"{name}: every node agrees with {against}.")
        else:
            where = "the model input" if first.source is None else f"'{first.source}'"
            if loc.direct:
                fed = f"fed by {where}"
                cause = ("its input agrees, so the fault is in this node" if loc.input_agrees
                         else "its input already differs")
            else:
                fed = f"nearest compared node upstream: {where}"
                cause = ("it agrees, so the fault is in this node or between them" if loc.input_agrees
                         else "it already differs")
            lines.append(f"{name}: first divergent node '{first.path}' ({first.kind}): max rel error "
                         f"{first.comparison.max_rel:.3e} (max abs {first.comparison.max_abs:.3e}); "
                         f"{fed}: {cause}.")
        if all_nodes or first is not None:
            rows = [[n.path, n.kind, f"{n.comparison.max_abs:.3e}", f"{n.comparison.max_rel:.3e}",
                     "ok" if n.comparison.passed else "DIVERGES"] for n in loc.nodes
                    if all_nodes or n is first or not n.comparison.passed][: None if all_nodes else 8]
            lines += ["  " + l for l in table(["node", "type", "max abs", "max rel", ""], rows)]
    return lines


def text(result: ParityResult, all_nodes: bool = False) -> str:
    shape = "x".join(map(str, result.input_shape))
    model = result.model
    if result.against:
        options = ", ".join(f"{k}={v}" for k, v in result.options.items())
        model = f"{model}{f' ({options})' if options else ''} against {result.reference} {result.zoo_model}"
    if result.native:
        model = f"{result.native}, traced"
    lines = [f"parity: {model}  input {result.batch}x{shape}  {result.dtype}  seed {result.seed}  "
             f"reference {result.reference}  tolerance max|out-ref| <= {result.atol:g} + {result.rtol:g}*max|ref|", ""]
    lines += device_lines(result)
    lines += table(["backend", "max abs", "max rel", "mean abs", "top-1", "verdict"], _summary_rows(result))
    failures = failure_lines(result)
    if failures:
        lines += ["", "failed backends (their worker died or timed out: an environment failure, not a disagreement)"]
        lines += failures
    lines += ["", "seconds per phase"]
    lines += table(["backend"] + list(PHASES), _timing_rows(result)) + _timing_note(result)
    localisation = localisation_lines(result, all_nodes)
    if localisation:
        lines += ["", "per-node comparison"] + localisation
    lines += ["", verdict(result)]
    return "\n".join(lines)


def as_dict(result: ParityResult) -> dict:
    return {
        "model": result.model, "native": result.native, "options": result.options, "against": result.against, "zoo_model": result.zoo_model,
        "backends": result.backends, "reference": result.reference,
        "dtype": result.dtype, "input_shape": list(result.input_shape), "batch": result.batch,
        "seed": result.seed, "rtol": result.rtol, "atol": result.atol, "passed": result.passed,
        "comparisons": {name: {**r.comparison.as_dict(),
                               **({"localisation": r.localisation.as_dict()} if r.localisation else {})}
                        for name, r in result.results.items() if r.comparison is not None},
        "timings_s": result.timings, "param_counts": {k: list(v) for k, v in result.param_counts.items()},
        "versions": result.versions, "devices": result.devices, "tf32": result.tf32,
        "failures": dict(result.failures),
    }


def write_json(result: ParityResult, path: str) -> None:
    write_atomic(path, json.dumps(strict(as_dict(result)), indent=2, allow_nan=False))
