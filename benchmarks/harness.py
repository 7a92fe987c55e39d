"""Sections 2 and 3: the parity run against its irreducible parts, and its peak memory.

Section 2. `parity.run(model, backends=torch,mxnet,keras, layers=True)` (224x224,
batch 2, float32: the CLI's defaults plus forced localisation, and the text report
rendered) in a fresh process, against each framework *alone* in a fresh process
of its own: import the framework (cold: nothing in `sys.modules`), build the same
native model, run one forward of the same batch on the framework's ordinary path
(torch `inference_mode` on its default thread count or on one thread; hybridized
Gluon; Keras compiled `tf.function` or eager: whichever is faster for one call). Both are timed inside the process from its first
line (interpreter start-up excluded on both sides).

    harness overhead = parity run - sum over frameworks of (import + build + forward)

It is everything only the harness does: importing refnets and parity, seeded
canonical weights, weight transfer, comparison, localisation (every backend's
forward capturing every node's output, the reference's once beside each other
backend: with layers=True those are the run's forwards), the report.

Both ways a run can go: `in-process` (the library's default: `parity.run` in one
process) and `workers` (the CLI's default: every backend in a worker process,
steps side by side). Phase walls come from the run's progress marks (the
backends' steps overlap in the workers way, and the capturing forwards in both).
CPU seconds are reported beside the wall: the harness's own work, whatever the
overlap.

Section 3. Peak memory of that run -- in-process its `ru_maxrss`, with workers the
sampled peak of the summed RSS of the process tree -- against the frameworks'
baseline (a fresh process after importing the three backends; with workers the
tree of the three started workers and the parent) plus the three native models'
weights.
"""

from __future__ import annotations

import time
from typing import List, Optional

from refnets.backends import catalog

from ._common import median, peak_rss_mb, rss_mb
from .proctree import TreeSampler, tree_rss_mb

MODELS = ("resnet18", "resnet50v2")
FRAMEWORKS = tuple(name for name, record in catalog.BACKENDS.items() if record.default)  # the frameworks
BATCH = 2
SEED = 0
TARGET_OVERHEAD = 0.10
TARGET_MEMORY = 1.3  # peak RSS / (frameworks' baseline + three sets of weights)
MODES = ("in-process", "workers")  # the library's default, the CLI's default
PHASE_OF_MARK = (("importing", "import"), ("building", "build"), ("setting weights", "weights"),
                 ("forward in", "forward"), ("capturing", "localise"))


# ------------------------------------------------------------------ workers


def cpu_seconds(start_cpu: float, children: bool = False) -> float:
    """CPU seconds of this process since `start_cpu` (`time.process_time()`), plus
    its waited-for children's (the workers) when `children`."""
    import os

    total = time.process_time() - start_cpu
    if children:
        times = os.times()
        total += times.children_user + times.children_system
    return total


def phase_walls(marks: List[dict], end: float) -> dict:
    """Wall seconds of each phase: from its first progress mark to the first mark
    of the next phase (the last one to `end`)."""
    starts = []
    for mark in marks:
        phase = next((p for prefix, p in PHASE_OF_MARK if mark["message"].startswith(prefix)), None)
        if phase is not None and phase not in [p for p, _ in starts]:
            starts.append((phase, mark["t"]))
    ends = [t for _, t in starts[1:]] + [end]
    return {phase: stop - begin for (phase, begin), stop in zip(starts, ends)}


def worker_parity(start: float, start_cpu: float, model: str, layers: bool = True, mode: str = "in-process") -> dict:
    from refnets import workers

    sampler = TreeSampler() if mode == "workers" else None
    t = time.perf_counter()
    import parity
    from parity.reports import inference as report

    harness_import_s = time.perf_counter() - t
    workers.set_mode(mode)
    marks = []

    def progress(message: str) -> None:
        marks.append({"t": time.perf_counter() - start, "message": message, "peak_rss_mb": peak_rss_mb(),
                      "peak_tree_mb": None if sampler is None else sampler.peak_mb})

    result = parity.run(model, backends=list(FRAMEWORKS), batch=BATCH, seed=SEED, layers=layers, progress=progress)
    run_end = time.perf_counter() - start
    t = time.perf_counter()
    text = report.text(result, all_nodes=layers)
    report_s = time.perf_counter() - t
    total = time.perf_counter() - start
    workers.close_all()  # waited for: their CPU time counts in this process's children's
    peak = peak_rss_mb() if sampler is None else sampler.stop()
    capturing = next((m for m in marks if m["message"].startswith("capturing")), None)
    before = None if capturing is None else capturing["peak_rss_mb" if sampler is None else "peak_tree_mb"]
    return {"model": model, "mode": mode, "layers": layers, "total_s": total, "harness_import_s": harness_import_s,
            "setup_s": marks[0]["t"] if marks else None,  # process start .. first backend import
            "walls": phase_walls(marks, run_end), "cpu_s": cpu_seconds(start_cpu, children=True),
            "report_s": report_s, "report_lines": text.count("\n") + 1,
            "timings": result.timings, "passed": result.passed,
            "localised": sorted(b for b, r in result.results.items() if r.localisation is not None),
            "max_rel": {b: r.comparison.max_rel for b, r in result.results.items() if r.comparison},
            "peak_rss_mb": peak, "rss_end_mb": rss_mb(), "peak_rss_before_localise_mb": before,
            "marks": marks}


def worker_alone(start: float, start_cpu: float, framework: str, model: str, mode: str = "default") -> dict:
    """One framework alone: cold import, build, one forward (batch 2)."""
    import numpy as np

    t = time.perf_counter()
    if framework == "torch":
        import torch
    elif framework == "mxnet":
        import mxnet as mx
    else:
        import keras  # noqa: F401
        import tensorflow as tf
    import_s = time.perf_counter() - t

    t = time.perf_counter()
    import refnets
    from refnets import backends

    impl = backends.get(framework)  # the framework is loaded already: this is refnets' own import
    refnets_import_s = time.perf_counter() - t

    t = time.perf_counter()
    spec = refnets.get_spec(model)
    net = impl.build(spec)
    if framework == "mxnet":
        mx.nd.waitall()  # Gluon initialises asynchronously: count the whole build here
    build_s = time.perf_counter() - t

    x = np.random.default_rng(SEED + 1).standard_normal((BATCH,) + tuple(spec.input_shape)).astype("float32")
    threads = None
    if framework == "torch":
        if mode == "threads1":
            torch.set_num_threads(1)
        threads = torch.get_num_threads()
    t = time.perf_counter()
    if framework == "torch":
        with torch.inference_mode():
            out = net(torch.from_numpy(x)).numpy()
    elif framework == "mxnet":
        with mx.autograd.pause(train_mode=False):
            out = net(mx.nd.array(x)).asnumpy()
    else:
        nhwc = tf.constant(np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))))
        if mode == "eager":
            out = net(nhwc, training=False).numpy()
        else:
            signature = tf.TensorSpec((None,) + tuple(net.inputs[0].shape[1:]), net.inputs[0].dtype)
            run = tf.function(lambda batch: net(batch, training=False), input_signature=[signature])
            out = run(nhwc).numpy()
    forward_s = time.perf_counter() - t
    assert out.shape[0] == BATCH
    return {"framework": framework, "model": model, "mode": mode, "threads": threads, "import_s": import_s,
            "refnets_import_s": refnets_import_s, "build_s": build_s, "forward_s": forward_s,
            "total_s": time.perf_counter() - start, "cpu_s": cpu_seconds(start_cpu), "peak_rss_mb": peak_rss_mb()}


def worker_baseline(start: float, start_cpu: float, mode: str = "in-process") -> dict:
    """RSS after importing the three backends (so the three frameworks), nothing
    built: in this process, or (`workers`) in three started workers plus this one."""
    import os

    from refnets import backends, workers

    workers.set_mode(mode)
    t = time.perf_counter()
    workers.prestart(FRAMEWORKS)
    for name in FRAMEWORKS:
        backends.get(name).versions()  # a worker: waits for its hello
    result = {"mode": mode, "import_s": time.perf_counter() - t, "rss_mb": tree_rss_mb(os.getpid()),
              "peak_rss_mb": peak_rss_mb()}
    workers.close_all()
    return result


# ------------------------------------------------------------------ in the parent


def _alone_modes(framework: str) -> List[str]:
    """The ordinary ways of one forward; the irreducible part is the fastest. Keras:
    a traced tf.function or an eager call. Torch: its default thread count or one
    thread (importing mxnet sets torch's OpenMP pool to one thread, so that is what
    a parity run gets; on a busy machine one thread can be far faster)."""
    return {"keras": ["compiled", "eager"], "torch": ["default", "threads1"]}.get(framework, ["default"])


def run(quick: bool, log) -> dict:
    from ._common import worker

    # The machine drifts within a run (every import got steadily faster over one run:
    # keras alone 5.9 -> 3.8 s), so the parity runs and the frameworks alone take
    # turns going first in the order ABBA, which cancels a steady drift.
    repeats = 1 if quick else 4
    log("parity: warm-up process (page cache), then baseline memory")
    worker("baseline")
    raw = {"parity": [], "alone": [], "baseline": [], "errors": []}

    def record(kind: str, result: dict, label: str) -> bool:
        if "error" in result:
            raw["errors"].append(result["error"])
            log("  " + result["error"])
            return False
        raw[kind].append(result)
        log(label)
        return True

    for rep in range(repeats):
        for mode in MODES:
            result = worker("baseline", mode=mode)
            record("baseline", result, f"  [{rep + 1}/{repeats}] baseline {mode}: {result.get('rss_mb', 0):.0f} MB")
        for model in MODELS:
            def parity_runs():
                for mode in MODES:
                    result = worker("parity", timeout=900, model=model, layers=True, mode=mode)
                    record("parity", result, f"  [{rep + 1}/{repeats}] parity {model} {mode}: "
                           f"{result.get('total_s', 0):.1f}s, cpu {result.get('cpu_s', 0):.1f}s, "
                           f"peak {result.get('peak_rss_mb', 0):.0f} MB, passed={result.get('passed')}")

            def alone_runs():
                for framework in FRAMEWORKS:
                    for way in _alone_modes(framework):
                        result = worker("alone", framework=framework, model=model, mode=way)
                        record("alone", result, f"  [{rep + 1}/{repeats}] {framework:5s} {way:8s} alone {model}: "
                               f"import {result.get('import_s', 0):.2f}s build {result.get('build_s', 0):.2f}s "
                               f"forward {result.get('forward_s', 0):.2f}s")

            for runs in ((alone_runs, parity_runs) if rep % 4 in (1, 2) else (parity_runs, alone_runs)):
                runs()
    return {"repeats": repeats, "batch": BATCH, "target_overhead": TARGET_OVERHEAD, "modes": list(MODES),
            "models": {m: {mode: summarise(m, raw, mode) for mode in MODES} for m in MODELS},
            "baseline": {mode: {"rss_mb": median([b["rss_mb"] for b in raw["baseline"] if b["mode"] == mode]),
                                "import_s": median([b["import_s"] for b in raw["baseline"] if b["mode"] == mode])}
                         for mode in MODES},
            "raw": raw, "errors": raw["errors"]}


def alone_parts(model: str, raw: dict) -> dict:
    """Each framework alone: medians of import, build, refnets import, peak and CPU
    over its runs, and its fastest ordinary forward."""
    alone = {}
    for framework in FRAMEWORKS:
        mine = [a for a in raw["alone"] if a["model"] == model and a["framework"] == framework]
        if not mine:
            continue
        modes = {way: median([a["forward_s"] for a in mine if a["mode"] == way])
                 for way in _alone_modes(framework) if any(a["mode"] == way for a in mine)}
        best = min(modes, key=modes.get)
        # Import and build are the same work in every mode: medians over all of them.
        alone[framework] = {**{k: median([a[k] for a in mine])
                               for k in ("import_s", "build_s", "refnets_import_s", "peak_rss_mb")},
                            "cpu_s": median([a["cpu_s"] for a in mine if a["mode"] == best]),
                            "forward_s": modes[best], "mode": best, "forward_by_mode": modes}
    return alone


def summarise(model: str, raw: dict, mode: str) -> Optional[dict]:
    runs = [r for r in raw["parity"] if r["model"] == model and r["mode"] == mode]
    if not runs:
        return None
    phases = ("import", "build", "weights", "forward", "localise")
    parity = {p: median([r["walls"].get(p, 0.0) for r in runs]) for p in phases}
    parity.update({
        "total": median([r["total_s"] for r in runs]), "cpu": median([r["cpu_s"] for r in runs]),
        "setup": median([r["setup_s"] for r in runs]),  # refnets/parity import, spec
        "report": median([r["report_s"] for r in runs]),
        "per_backend": {p: {b: median([r["timings"].get(p, {}).get(b) for r in runs]) for b in FRAMEWORKS}
                        for p in phases}})
    alone = alone_parts(model, raw)
    irreducible = {p: sum(a[f"{p}_s"] for a in alone.values()) for p in ("import", "build", "forward", "cpu")}
    irreducible["total"] = sum(irreducible[p] for p in ("import", "build", "forward"))
    total = parity["total"]
    overhead = total - irreducible["total"]
    # The same run without the forced localisation (what a run whose backends all agree
    # does by default). With layers=True a backend's capturing forward is its forward
    # (no plain forward timed, but Gluon's): those are counted at their alone figures.
    folded = [b for b in alone if not parity["per_backend"]["forward"].get(b)]
    without = total - parity["localise"] + sum(alone[b]["forward_s"] for b in folded)
    overhead_without = without - irreducible["total"]
    return {"mode": mode, "parity": parity, "alone": alone, "irreducible": irreducible,
            "overhead_s": overhead, "overhead_frac": overhead / total,
            "cpu_overhead_s": parity["cpu"] - irreducible["cpu"],
            "cpu_overhead_frac": (parity["cpu"] - irreducible["cpu"]) / parity["cpu"],
            "overhead_without_localise_s": overhead_without, "overhead_without_localise_frac": overhead_without / without,
            "folded": folded,
            "passed": all(r["passed"] for r in runs), "localised": runs[0]["localised"], "max_rel": runs[0]["max_rel"],
            "memory": memory(model, runs, [b for b in raw["baseline"] if b["mode"] == mode])}


def memory(model: str, runs: List[dict], baselines: List[dict]) -> dict:
    import refnets
    from parity.engine.localise import capture_paths

    spec = refnets.get_spec(model)
    weights_mb = refnets.counts(spec).total * 4 / 2 ** 20
    infos = refnets.infer(spec)
    captured_mb = sum(_size(infos[p].out_shape) for p in capture_paths(spec)) * BATCH * 4 / 2 ** 20
    baseline = median([b["rss_mb"] for b in baselines])
    peak = median([r["peak_rss_mb"] for r in runs])
    before = median([r["peak_rss_before_localise_mb"] for r in runs])
    expected = None if baseline is None else baseline + 3 * weights_mb
    return {"weights_mb_per_framework": weights_mb, "weights_mb_three": 3 * weights_mb, "baseline_rss_mb": baseline,
            "expected_mb": expected, "peak_rss_mb": peak, "peak_before_localise_mb": before,
            "captured_activations_mb_per_backend": captured_mb,
            "peak_over_expected": None if not expected else peak / expected,
            "before_localise_over_expected": None if not expected or before is None else before / expected}


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
