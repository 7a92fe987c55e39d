"""The report of a port check (`parity --port`): text for people, JSON for machines."""

from __future__ import annotations

import json
from collections import Counter
from typing import List

from ..port.graph_match import summary_lines
from ..port.run import PortResult
from ..outputs import write_atomic
from .tables import strict, table

SHOWN_UNMATCHED = 12


def _mapping_lines(result: PortResult) -> List[str]:
    mapping = result.mapping
    kinds = Counter(r.kind for r, _ in mapping.pairs)
    total = len(mapping.pairs) + len(mapping.unmatched_ref)
    lines = [f"mapping: {len(mapping.pairs)} of {total} reference layers matched to port layers "
             f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items())) or 'none'}) by {result.matched_by}; "
             f"{len(mapping.unmatched_user)} port layers left over"
             + (f"; {result.reassigned} swap(s) of same-shaped layers settled by their inputs" if result.reassigned else "")]
    for ref, why in mapping.unmatched_ref[:SHOWN_UNMATCHED]:
        lines.append(f"  reference '{ref.path}' not matched: {why}")
    for user, why in mapping.unmatched_user[:SHOWN_UNMATCHED]:
        lines.append(f"  port layer '{user.name}' ({user.type_name}) not matched: {why}")
    hidden = sum(max(len(items) - SHOWN_UNMATCHED, 0) for items in (mapping.unmatched_ref, mapping.unmatched_user))
    if hidden:
        lines.append(f"  ... and {hidden} more (see --json)")
    if result.unused:
        lines.append(f"  not called in the forward pass (ignored): {', '.join(result.unused)}")
    return lines


def _output_lines(result: PortResult) -> List[str]:
    c = result.comparison
    if c is None:
        return ["output: not compared: the reference weights could not be mapped onto the port"]
    if result.diff is not None and result.diff.affects_inference and c.passed:
        verdict = "agrees at this input, but the structure differs (see above)"
        return [f"output: port vs {result.reference}: max rel {c.max_rel:.3e}: {verdict}"]
    verdict = "PASS" if c.passed else ("FAIL (NaN/Inf)" if not c.finite else "FAIL")
    top1 = "-" if c.top1 is None else f"{c.top1:.0%}"
    return table(["output", "max abs", "max rel", "mean abs", "top-1", "verdict"],
                  [[f"port vs {result.reference}", f"{c.max_abs:.3e}", f"{c.max_rel:.3e}", f"{c.mean_abs:.3e}", top1,
                    verdict]])


def _layer_lines(result: PortResult, all_layers: bool) -> List[str]:
    first = result.first_divergent
    lines = []
    if first is not None:
        lines += ["", f"first divergent layer: port '{first.port}' = reference '{first.reference}' ({first.kind}): "
                      f"max rel error {first.comparison.max_rel:.3e} (max abs {first.comparison.max_abs:.3e})"]
        if result.diagnosis:
            lines.append(f"diagnosis ({result.diagnosis.kind}): {result.diagnosis.message}")
    elif result.layers and result.comparison is not None and not result.comparison.passed:
        lines += ["", f"every mapped layer agrees, the output does not: the port's code after its last mapped layer "
                      f"('{result.layers[-1].port}') differs from the reference's"]
    if result.layers and (all_layers or first is not None):
        start = 0 if all_layers else max(result.layers.index(first) - 2, 0)
        shown = result.layers if all_layers else result.layers[start:start + 6]
        rows = [[p.port, p.reference, p.kind, f"{p.comparison.max_abs:.3e}", f"{p.comparison.max_rel:.3e}",
                 "ok" if p.comparison.passed else "DIVERGES"] for p in shown]
        lines += ["", "per-layer comparison" + ("" if all_layers else " (around the first divergence; --layers: all)")]
        lines += ["  " + l for l in table(["port layer", "reference node", "kind", "max abs", "max rel", ""], rows)]
    return lines


def text(result: PortResult, all_layers: bool = False) -> str:
    shape = "x".join(map(str, result.input_shape))
    options = ", ".join(f"{k}={v}" for k, v in result.options.items())
    lines = [f"parity --port: {result.port} ({result.port_backend}) against {result.model}"
             f"{f' ({options})' if options else ''} in {result.reference}",
             f"input {result.batch}x{shape}  {result.dtype}  seed {result.seed}  tolerance max|out-ref| <= "
             f"{result.atol:g} + {result.rtol:g}*max|ref|", ""]
    if result.reference_check is not None:
        c = result.reference_check
        lines += [f"reference: {result.native_reference}, traced and built in {result.reference}: reproduces it to max "
                  f"rel {c.max_rel:.3e} ({'ok' if c.passed else 'FAILS: the trace is wrong, please report it'})", ""]
    if result.diff is not None:
        lines += summary_lines(result.diff) + [""]
    lines += _mapping_lines(result) + [""] + _output_lines(result) + _layer_lines(result, all_layers)
    lines += ["", "seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())]
    lines += ["", "PORT MATCHES THE REFERENCE" if result.passed else "PORT DIFFERS FROM THE REFERENCE"]
    return "\n".join(lines)


def as_dict(result: PortResult) -> dict:
    return {
        "model": result.model, "options": result.options, "port": result.port, "port_backend": result.port_backend,
        "reference": result.reference, "dtype": result.dtype, "input_shape": list(result.input_shape),
        "batch": result.batch, "seed": result.seed, "rtol": result.rtol, "atol": result.atol,
        "passed": result.passed, "matched_by": result.matched_by, "native_reference": result.native_reference,
        "reference_check": None if result.reference_check is None else result.reference_check.as_dict(),
        "structure": None if result.diff is None else {"identical": result.diff.identical,
                                                       "copyable": result.diff.copyable,
                                                       "differences": result.diff.summary()},
        "mapping": result.mapping.as_dict(), "reassigned": result.reassigned,
        "unused": result.unused, "output": None if result.comparison is None else result.comparison.as_dict(),
        "first_divergent": None if result.first_divergent is None else {
            "port": result.first_divergent.port, "reference": result.first_divergent.reference,
            "kind": result.first_divergent.kind, **result.first_divergent.comparison.as_dict()},
        "diagnosis": None if result.diagnosis is None else result.diagnosis.as_dict(),
        "layers": [{"port": p.port, "reference": p.reference, "kind": p.kind, **p.comparison.as_dict()}
                   for p in result.layers],
        "timings_s": result.timings, "versions": result.versions,
    }


def write_json(result: PortResult, path: str) -> None:
    write_atomic(path, json.dumps(strict(as_dict(result)), indent=2, allow_nan=False))
