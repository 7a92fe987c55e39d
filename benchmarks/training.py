"""Training parity of every model, float32 and float64: the worst gradient
error, the training-mode step, and how the weights drift apart over N steps.

    python -m benchmarks.training [--models a,b] [--dtypes float32,float64] [--steps 10]
                                  [--modes grad,grad_inference,train,steps,floor]
                                  [--budget-gib 6] [--out benchmarks/results]

For each model (the small inputs of `benchmarks.agreement`) and dtype, in a fresh
process, with all installed backends and the first as the reference, batch 8,
seeded weights (BatchNorm statistics random), Dropout off:
  grad        `parity.run_grad` in training mode: the worst max|a-b|/max|ref| over
              the other backends of the input gradient and every parameter's
              gradient (node scale)
  grad inference  the same in inference mode
  train       `parity.run_train`: the worst of the logits, the loss and every
              BatchNorm running statistic
  steps       `parity.run_train_steps` with heavy-ball momentum (the defaults: lr
              2^-10, momentum 0.875): the worst weight after step 1, 2, 5, N and
              the worst loss over the steps
  floor       the same N steps in the reference backend alone, twice: from the
              seeded weights and from the same weights each moved by one
              rounding unit (w * (1 +- eps)). How far the reference drifts from
              itself is the floor of any comparison of N steps: the
              problem's own amplification of rounding, whatever the framework
A case whose estimated memory (copies of the weights the run holds, plus the
frameworks) exceeds --budget-gib is not run and is listed with the estimate.
Writes training.json (after every case) and training.md. With --modes, the other
modes' figures are kept from an existing training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import refnets

from ._common import worker
from .agreement import SMALL

DTYPES = ("float32", "float64")
BASELINE_GIB = 0.9  # the three frameworks imported (measured: ~0.65 GiB) and some slack
# Copies of the weights a run holds at once, measured: a gradient run of vgg11 in
# float32 peaked at 5.1 GiB for 0.53 GB of weights (alexnet float64: 6 copies over
# the baseline), since models are built one at a time; optimiser steps keep three
# models with gradients and momentum, the reference's and one backend's weights
# and the start (alexnet float32: 17 copies before the per-node update figures); the
# floor keeps two torch models with gradients and momentum (vgg19 float32: 10.6).
COPIES = {"grad": 9, "grad_inference": 9, "train": 9, "steps": 16, "floor": 11}
REPORTED_STEPS = (1, 2, 5, 10)


def cases(models):
    out = [(m, SMALL[m], None) for m in models if m in SMALL]
    if "googlenet" in models:
        out.append(("googlenet", (3, 40, 40), {"layout": "torchvision"}))
    return out


def estimate_gib(model, shape, dtype, options, mode) -> float:
    spec = refnets.get_spec(model, input_shape=shape, **(options or {}))
    size = refnets.counts(spec).total * (4 if dtype == "float32" else 8)
    return BASELINE_GIB + COPIES[mode] * size / 2 ** 30


def _worst_gradient(result) -> dict:
    """The worst relative error over the other backends and over the input
    gradient and every parameter's gradient, with where it is."""
    worst = {"rel": 0.0, "where": None, "passed": result.passed,
             "failing": sorted(n for n, r in result.results.items() if not r.passed)}
    for name, r in result.results.items():
        for label, value in [("input", r.input_grad.max_rel)] + [(p.name, p.comparison.max_rel) for p in r.params]:
            if value > worst["rel"]:
                worst.update(rel=value, where=f"{name}: {label}")
    return worst


def _worst_train(result) -> dict:
    worst = {"rel": 0.0, "where": None, "passed": result.passed,
             "failing": sorted(n for n, r in result.results.items() if not r.passed)}
    for name, r in result.results.items():
        figures = [("logits", r.outputs.max_rel), ("loss", r.loss.max_rel)]
        for label, value in figures + [(p.name, p.comparison.max_rel) for p in r.params]:
            if value > worst["rel"]:
                worst.update(rel=value, where=f"{name}: {label}")
    return worst


def _steps(result) -> dict:
    """Per step: the worst weight (own scale) and worst update (node scale) over
    the other backends; the worst loss over all steps; the first failing step."""
    per_step = []
    for i in range(result.steps):
        records = [r.steps[i] for r in result.results.values()]
        per_step.append({"step": i + 1, "weights": max(s.weights.max_rel for s in records),
                         "update": max(s.update.max_rel for s in records),
                         "loss": max(s.loss.max_rel for s in records),
                         "passed": all(s.passed for s in records)})
    failing = [s["step"] for s in per_step if not s["passed"]]
    return {"per_step": per_step, "worst_loss": max(s["loss"] for s in per_step), "passed": result.passed,
            "first_failing_step": failing[0] if failing else None,
            "failing": sorted(n for n, r in result.results.items() if not r.passed)}


def floor(model, shape, dtype, options, steps, backend="torch", seed=0) -> dict:
    """The reference against itself over `steps` momentum steps (the defaults of
    parity.run_train_steps), from the seeded weights and from the same weights
    moved by one rounding unit (`parity.training.nudge`): the worst weight's
    relative difference per step, as `run_train_steps(floor=True)` reports it, in
    a process of its own (two models instead of four)."""
    import numpy as np
    from parity import training
    from refnets import backends
    from refnets import spec as S
    from refnets import weights as W

    spec, _ = S.without_dropout(refnets.get_spec(model, input_shape=tuple(shape), **(options or {})))
    impl = backends.get(backend)
    start = W.init(spec, seed=seed, dtype=dtype)
    nudged = training.nudge(start, seed)
    trainers = []
    for weights in (start, nudged):
        net = impl.build(spec, dtype=dtype)
        impl.set_weights(net, weights)
        trainers.append((net, impl.Trainer(net, "momentum", training.DEFAULT_LR, training.DEFAULT_MOMENTUM)))
    del start, nudged
    num_classes = refnets.output_shape(spec)[0]
    per_step = []
    for step in range(1, steps + 1):
        x, labels = training.seeded_batch(seed, step, training.DEFAULT_BATCH, spec.input_shape, dtype, num_classes)
        for net, trainer in trainers:
            trainer.step(x, labels)
        a, b = (impl.get_weights(net) for net, _ in trainers)
        per_step.append(max(float(np.max(np.abs(a[k] - b[k].astype(np.float64)))) / float(np.max(np.abs(b[k])))
                            for k in b if np.max(np.abs(b[k])) > 0))
        del a, b
    return {"backend": backend, "per_step": per_step}


def measure(model, shape, dtype, options, steps, modes) -> dict:
    """One case in this process (run by `benchmarks._worker training`)."""
    from parity import run_grad, run_train, run_train_steps

    common = dict(input_shape=tuple(shape), dtype=dtype, options=options)
    out, seconds = {}, {}
    for mode in modes:
        start = time.perf_counter()
        if mode == "grad":
            out[mode] = _worst_gradient(run_grad(model, **common))
        elif mode == "grad_inference":
            out[mode] = _worst_gradient(run_grad(model, train=False, **common))
        elif mode == "train":
            out[mode] = _worst_train(run_train(model, **common))
        elif mode == "floor":
            out[mode] = floor(model, shape, dtype, options, steps)
        else:
            out[mode] = _steps(run_train_steps(model, steps, optimizer="momentum", **common))
        seconds[mode] = round(time.perf_counter() - start, 1)
    out["seconds"] = seconds
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="comma-separated subset (default: every model of benchmarks.agreement)")
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--modes", default=",".join(COPIES), help="comma-separated subset of " + ", ".join(COPIES))
    p.add_argument("--budget-gib", type=float, default=6.0)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args(argv)
    models = args.models.split(",") if args.models else list(SMALL)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "training.json")
    rows = _previous(path, args) if args.modes != ",".join(COPIES) else []
    for model, shape, options in cases(models):
        for dtype in args.dtypes.split(","):
            row = _case(model, shape, dtype, options, args)
            old = next((r for r in rows if _key(r) == _key(row)), None)
            if old is None:
                rows.append(row)
            else:
                _merge(old, row)
                old["skipped"] = {**{k: v for k, v in old.get("skipped", {}).items()
                                     if k not in args.modes.split(",")}, **row["skipped"]}
            with open(path, "w") as handle:
                json.dump({"steps": args.steps, "budget_gib": args.budget_gib, "rows": rows}, handle, indent=1)
    with open(os.path.join(args.out, "training.md"), "w") as handle:
        handle.write(markdown(rows, args.steps))
    return 0


def _merge(old: dict, row: dict) -> None:
    """Add a later run's modes to an earlier row: its figures and seconds; the
    peak memory is the larger of the two processes'."""
    for key, value in row.items():
        if key == "seconds":
            old[key] = {**old.get(key, {}), **value}
        elif key == "peak_rss_gib":
            old[key] = max(old.get(key, 0.0), value)
        elif key != "skipped":
            old[key] = value


def _key(row) -> tuple:
    return row["model"], json.dumps(row["options"], sort_keys=True), row["input"], row["dtype"]


def _previous(path, args) -> list:
    """The rows of an earlier run (kept for the modes not measured now)."""
    if not os.path.isfile(path):
        return []
    with open(path) as handle:
        data = json.load(handle)
    if data.get("steps") != args.steps:
        raise SystemExit(f"{path} holds {data.get('steps')} steps, not {args.steps}: measure every mode again")
    return data["rows"]


def _case(model, shape, dtype, options, args) -> dict:
    wanted = args.modes.split(",")
    estimates = {m: estimate_gib(model, shape, dtype, options, m) for m in wanted}
    modes = [m for m in wanted if estimates[m] <= args.budget_gib]
    row = {"model": model, "options": options or {}, "input": "x".join(map(str, shape)), "dtype": dtype,
           "skipped": {m: round(estimates[m], 1) for m in wanted if m not in modes}}
    start = time.perf_counter()
    if modes:
        row.update(worker("training", timeout=3600, model=model, shape=list(shape), dtype=dtype,
                          options=options, steps=args.steps, modes=modes))
    print(f"{model:16s} {row['input']:9s} {dtype}  {_line(row)}  {time.perf_counter() - start:.0f}s", flush=True)
    return row


def _line(row) -> str:
    if "error" in row:
        return "ERROR " + row["error"].splitlines()[-1]
    parts = [f"{m} {row[m]['rel']:.1e}" for m in ("grad", "grad_inference", "train") if m in row]
    if "steps" in row:
        parts.append("steps " + " ".join(f"{s['weights']:.0e}" for s in row["steps"]["per_step"]))
    if "floor" in row:
        parts.append("floor " + " ".join(f"{v:.0e}" for v in row["floor"]["per_step"]))
    return "  ".join(parts + [f"skipped {row['skipped']}" if row["skipped"] else ""])


def _cell(row, mode) -> str:
    if mode in row.get("skipped", {}):
        return f"(needs ~{row['skipped'][mode]} GiB)"
    if mode not in row:
        return "error" if "error" in row else "-"
    figure = row[mode]
    failing = "" if figure["passed"] else " **" + ",".join(figure["failing"]) + "**"
    return f"{figure['rel']:.1e}{failing}"


def _steps_cell(row, steps) -> str:
    if "steps" in row.get("skipped", {}):
        return f"(needs ~{row['skipped']['steps']} GiB)"
    if "steps" not in row:
        return "error" if "error" in row else "-"
    per_step = row["steps"]["per_step"]
    cells = [f"{per_step[n - 1]['weights']:.0e}" for n in REPORTED_STEPS if n <= len(per_step)]
    first = row["steps"]["first_failing_step"]
    return " / ".join(cells) + (f" (fails from step {first})" if first else "")


def _floor_cell(row, steps) -> str:
    if "floor" in row.get("skipped", {}):
        return f"(needs ~{row['skipped']['floor']} GiB)"
    if "floor" not in row:
        return "-"
    per_step = row["floor"]["per_step"]
    return " / ".join(f"{per_step[n - 1]:.0e}" for n in REPORTED_STEPS if n <= len(per_step))


def markdown(rows, steps) -> str:
    shown = [n for n in REPORTED_STEPS if n <= steps]
    lines = [
        "Worst max|a-b|/max|ref| over the other backends against the first (batch 8, Dropout off). grad: input "
        "and parameter gradients in training mode (a parameter at its node's scale); grad inference: the same "
        "in inference mode; train: training-mode logits, loss and BatchNorm running statistics after one step; "
        f"weights after step {', '.join(map(str, shown))} of heavy-ball SGD (lr 2^-10, momentum 0.875), each "
        "parameter at its own scale; update: w_N - w_0 at its node's scale (its float32 floor is the rounding "
        "of the weights themselves, ~1e-4); floor: the reference (torch) against itself from weights one "
        "rounding unit apart, the same steps: the problem's own amplification of rounding. "
        "**backend**: fails the bar (1e-5 float32, 1e-10 float64).", "",
        "| model | input | dtype | grad | grad inference | train | weights after " + "/".join(map(str, shown))
        + f" steps | floor after {'/'.join(map(str, shown))} | update after {shown[-1]} steps "
        "| worst loss over the steps |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        label = r["model"] + "".join(f" {k}={v}" for k, v in r["options"].items())
        loss = f"{r['steps']['worst_loss']:.0e}" if "steps" in r else "-"
        update = f"{r['steps']['per_step'][shown[-1] - 1]['update']:.0e}" if "steps" in r else "-"
        lines.append(f"| {label} | {r['input']} | {r['dtype']} | {_cell(r, 'grad')} | "
                     f"{_cell(r, 'grad_inference')} | {_cell(r, 'train')} | {_steps_cell(r, steps)} | "
                     f"{_floor_cell(r, steps)} | {update} | {loss} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
