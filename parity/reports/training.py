"""The report of the training runs (`parity.training`): a table for people, a
JSON document for machines, in the style of the inference report."""

from __future__ import annotations

import json
from typing import List, Optional

from ..engine.metrics import Comparison
from ..training.common import ParamComparison, TrainingResult
from . import inference as inference_report
from ..outputs import write_atomic
from .tables import device_lines, strict, table

PHASES = ("import", "build", "weights", "step", "compare", "localise", "floor")
TITLES = {"grad": "gradients", "train": "one training-mode step", "train-steps": "optimiser steps"}
# How many rows of per-parameter figures are shown without --layers.
SHOWN = 8


def _rel(c: Optional[Comparison]) -> str:
    return "-" if c is None else f"{c.max_rel:.3e}"


def _verdict(passed: bool, comparisons) -> str:
    if passed:
        return "PASS"
    return "FAIL (NaN/Inf)" if any(c is not None and not c.finite for c in comparisons) else "FAIL"


def _worst(params: List[ParamComparison]) -> Optional[ParamComparison]:
    return max(params, key=lambda p: p.comparison.max_rel) if params else None


def _header(result: TrainingResult) -> List[str]:
    shape = "x".join(map(str, result.input_shape))
    if result.mode == "grad":
        mode = "training mode" if result.train_mode else "inference mode"
        if result.fewest_batchnorm_values is not None:
            mode += " (BatchNorm on batch statistics)" if result.train_mode else " (BatchNorm on running statistics)"
    elif result.mode == "train":
        mode = "training mode, no optimiser update"
    else:
        momentum = f", momentum {result.momentum:g}" if result.optimizer == "momentum" else ""
        mode = f"{result.steps} step(s) of {result.optimizer}, lr {result.lr!r}{momentum}"
    lines = [f"parity {TITLES[result.mode]}: {result.model}  input {result.batch}x{shape}  {result.dtype}  "
             f"seed {result.seed}  reference {result.reference}  {mode}",
             f"loss: mean softmax cross-entropy over the batch, seeded labels; tolerance max|out-ref| <= "
             f"{result.atol:g} + {result.rtol:g}*scale"]
    if result.dropout_removed:
        lines.append(f"dropout off: {', '.join(repr(p) for p in result.dropout_removed)} run as identity "
                     f"(each framework draws its own dropout mask)")
    if result.fewest_batchnorm_values and result.train_mode:
        count, node = result.fewest_batchnorm_values
        lines.append(f"training-mode BatchNorm: fewest values per channel {count} ('{node}')")
    lines += [f"note: {note}" for note in result.notes]
    return lines + [""] + device_lines(result)


def _summary(result: TrainingResult) -> List[str]:
    rows = []
    for name in result.backends[1:]:
        r = result.results[name]
        worst = _worst(r.params)
        worst_cell = "-" if worst is None else f"{worst.comparison.max_rel:.3e} ({worst.name})"
        label = f"{name} vs {result.reference}"
        if result.mode == "grad":
            rows.append([label, _rel(r.loss), _rel(r.input_grad), worst_cell,
                         _verdict(r.passed, [r.loss, r.input_grad] + [p.comparison for p in r.params])])
        elif result.mode == "train":
            top1 = "-" if r.outputs.top1 is None else f"{r.outputs.top1:.0%}"
            rows.append([label, _rel(r.loss), _rel(r.outputs), top1, worst_cell,
                         _verdict(r.passed, [r.loss, r.outputs] + [p.comparison for p in r.params])])
        else:
            last = r.steps[-1]
            rows.append([label, f"{max(s.loss.max_rel for s in r.steps):.3e}", worst_cell,
                         f"{last.update.max_rel:.3e}", _verdict(r.passed, [s.loss for s in r.steps] +
                                                                 [p.comparison for p in r.params])])
    headers = {
        "grad": ["backend", "loss rel", "input grad rel", "worst parameter gradient rel (node scale)", "verdict"],
        "train": ["backend", "loss rel", "logits rel", "top-1", "worst running statistic rel", "verdict"],
        "train-steps": ["backend", "worst loss rel", "worst final weight rel", "update rel", "verdict"],
    }
    return table(headers[result.mode], rows)


def _steps(result: TrainingResult) -> List[str]:
    """Per step: the loss and the worst weight of every backend, and the worst
    change since the start: how the disagreement grows."""
    lines = ["", "per step: loss rel / worst weight rel / worst update rel (w_k - w_0, node scale)"]
    header = ["step"] + [f"ref loss ({result.reference})"] + [f"{n}" for n in result.backends[1:]]
    if result.floor is not None:
        header.append(f"floor: worst weight rel of {result.reference} against itself from weights 1 ulp apart")
    rows = []
    for i in range(result.steps):
        cells = [str(i + 1), f"{result.losses[result.reference][i]:.6g}"]
        for name in result.backends[1:]:
            s = result.results[name].steps[i]
            cells.append(f"{s.loss.max_rel:.1e} / {s.weights.max_rel:.1e} / {s.update.max_rel:.1e}")
        if result.floor is not None:
            cells.append(f"{result.floor[i]:.1e}")
        rows.append(cells)
    return lines + table(header, rows)


def _params_lines(result: TrainingResult, all_params: bool) -> List[str]:
    lines = []
    kind = {"grad": "gradient", "train": "running statistic", "train-steps": "weight"}[result.mode]
    for name in result.backends[1:]:
        r = result.results[name]
        first = r.first_divergent
        failing = [p for p in r.params if not p.comparison.passed]
        if first is None and not failing:
            if all_params:
                lines.append(f"{name}: every {kind} agrees with {result.reference}.")
        elif first is not None:
            lines.append(f"{name}: {_first_text(result, r, first, len(failing))}")
        if all_params or failing:
            shown = r.params if all_params else failing[:SHOWN]
            if result.mode == "grad":
                shown = list(reversed(shown))
            rows = [[p.name, p.kind, f"{p.comparison.max_abs:.3e}", f"{p.comparison.max_rel:.3e}",
                     "ok" if p.comparison.passed else "DIVERGES"] for p in shown]
            more = [] if all_params or len(failing) <= SHOWN else [f"  ... and {len(failing) - SHOWN} more"]
            order = " (backpropagation order)" if result.mode == "grad" else ""
            lines += [f"  {name}{order}:"] + ["  " + l for l in table(
                ["parameter", "kind", "max abs", "max rel", ""], rows)] + more
    return lines


def _first_text(result: TrainingResult, r, first: ParamComparison, failing: int) -> str:
    c = first.comparison
    figures = f"max rel {c.max_rel:.3e} (max abs {c.max_abs:.3e}); {failing} parameter(s) diverge"
    node = first.name.rsplit(".", 1)[0]
    if result.mode == "grad":
        return (f"first divergent gradient in backpropagation order '{first.name}': {figures}. Every gradient "
                f"computed before it agrees, so the fault is in node '{node}' or in the nodes between it and the "
                f"next parameterised node downstream.")
    if result.mode == "train":
        return (f"first divergent running statistic '{first.name}': {figures}. Every BatchNorm before it "
                f"agrees, so the fault is in the running-statistics update of '{node}' (momentum, variance "
                f"estimator) or, if the logits diverge too, in its training-mode input.")
    return (f"first divergent {first.kind} after step {r.first_divergent_step}: '{first.name}' "
            f"({'backpropagation order' if first.kind == 'weight' else 'execution order'}): "
            f"{figures} after the last step.")


def text(result: TrainingResult, all_params: bool = False) -> str:
    lines = _header(result) + _summary(result)
    if result.mode == "train-steps":
        lines += _steps(result)
    params = _params_lines(result, all_params)
    if params:
        lines += ["", "per-parameter comparison"] + params
    localisation = inference_report.localisation_lines(result, all_params) if result.mode == "train" else []
    if localisation:
        lines += ["", "per-node comparison (training-mode forward)"] + localisation
    timing = [[name] + [f"{result.timings.get(p, {}).get(name, 0.0):.2f}" for p in PHASES]
              for name in result.backends]
    lines += ["", "seconds per phase"] + table(["backend"] + list(PHASES), timing)
    lines += ["", "ALL AGREE" if result.passed else "DISAGREEMENT"]
    if not result.passed and result.dtype == "float32":
        lines.append("(float32: a ReLU or max-pool input within rounding of its kink can take the other branch in "
                     "one framework and change a gradient by that unit's share; rerun with --dtype float64 to "
                     "separate rounding from implementation differences)")
    return "\n".join(lines)


def _params_dict(params: List[ParamComparison]) -> list:
    return [{"name": p.name, "kind": p.kind, **p.comparison.as_dict()} for p in params]


def _backend_dict(result: TrainingResult, name: str) -> dict:
    r = result.results[name]
    out = {"passed": r.passed, "params": _params_dict(r.params),
           "first_divergent": None if r.first_divergent is None else {
               "name": r.first_divergent.name, "kind": r.first_divergent.kind, "step": r.first_divergent_step,
               **r.first_divergent.comparison.as_dict()}}
    for key in ("loss", "outputs", "input_grad"):
        value = getattr(r, key)
        if value is not None:
            out[key] = value.as_dict()
    if r.steps:
        out["steps"] = [{"step": s.step, "loss": s.loss.as_dict(), "weights": s.weights.as_dict(),
                         "weights_worst": s.weights_worst, "update": s.update.as_dict(),
                         "update_worst": s.update_worst, "passed": s.passed} for s in r.steps]
    if r.localisation is not None:
        out["localisation"] = r.localisation.as_dict()
    return out


def as_dict(result: TrainingResult) -> dict:
    return {
        "mode": result.mode, "model": result.model, "options": result.options, "backends": result.backends,
        "reference": result.reference, "dtype": result.dtype, "input_shape": list(result.input_shape),
        "batch": result.batch, "seed": result.seed, "rtol": result.rtol, "atol": result.atol,
        "train_mode": result.train_mode, "dropout_removed": list(result.dropout_removed),
        "fewest_batchnorm_values": None if result.fewest_batchnorm_values is None
        else list(result.fewest_batchnorm_values),
        "optimizer": result.optimizer, "lr": result.lr, "momentum": result.momentum, "steps": result.steps,
        "losses": result.losses, "floor": result.floor, "notes": result.notes, "passed": result.passed,
        "comparisons": {name: _backend_dict(result, name) for name in result.backends[1:]},
        "timings_s": result.timings, "param_counts": {k: list(v) for k, v in result.param_counts.items()},
        "versions": result.versions, "devices": result.devices, "tf32": result.tf32,
    }


def write_json(result: TrainingResult, path: str) -> None:
    write_atomic(path, json.dumps(strict(as_dict(result)), indent=2, allow_nan=False))
