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
canonical weights, weight transfer, comparison, localisation (a second forward in
every backend capturing every node's output), the report.

Section 3. Peak RSS (`ru_maxrss`) of that parity process, against the frameworks'
baseline (RSS of a fresh process after importing the three backends) plus the
three native models' weights.
"""

from __future__ import annotations

import time
from typing import List, Optional

from refnets.backends import catalog

from ._common import median, peak_rss_mb, rss_mb

MODELS = ("resnet18", "resnet50v2")
FRAMEWORKS = tuple(name for name, record in catalog.BACKENDS.items() if record.default)  # the frameworks
BATCH = 2
SEED = 0
TARGET_OVERHEAD = 0.10
TARGET_MEMORY = 1.3  # peak RSS / (frameworks' baseline + three sets of weights)


# ------------------------------------------------------------------ workers


def worker_parity(start: float, model: str, layers: bool = True) -> dict:
    t = time.perf_counter()
    import parity
    from parity.reports import inference as report

    harness_import_s = time.perf_counter() - t
    marks = []

    def progress(message: str) -> None:
        marks.append({"t": time.perf_counter() - start, "message": message, "peak_rss_mb": peak_rss_mb()})

    result = parity.run(model, backends=list(FRAMEWORKS), batch=BATCH, seed=SEED, layers=layers, progress=progress)
    t = time.perf_counter()
    text = report.text(result, all_nodes=layers)
    report_s = time.perf_counter() - t
    total = time.perf_counter() - start
    capturing = next((m for m in marks if m["message"].startswith("capturing")), None)
    return {"model": model, "layers": layers, "total_s": total, "harness_import_s": harness_import_s,
            "setup_s": marks[0]["t"] if marks else None,  # process start .. first backend import
            "report_s": report_s, "report_lines": text.count("\n") + 1,
            "timings": result.timings, "passed": result.passed,
            "max_rel": {b: r.comparison.max_rel for b, r in result.results.items() if r.comparison},
            "peak_rss_mb": peak_rss_mb(), "rss_end_mb": rss_mb(),
            "peak_rss_before_localise_mb": capturing["peak_rss_mb"] if capturing else None,
            "marks": marks}


def worker_alone(start: float, framework: str, model: str, mode: str = "default") -> dict:
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
            "total_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def worker_baseline(start: float) -> dict:
    """RSS after importing the three backends (so the three frameworks), nothing built."""
    from refnets import backends

    t = time.perf_counter()
    for name in FRAMEWORKS:
        backends.get(name)
    return {"import_s": time.perf_counter() - t, "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}


# ------------------------------------------------------------------ in the parent


def _alone_modes(framework: str) -> List[str]:
    """The ordinary ways of one forward; the irreducible part is the fastest. Keras:
    a traced tf.function or an eager call. Torch: its default thread count or one
    thread (importing mxnet sets torch's OpenMP pool to one thread, so that is what
    a parity run gets; on a busy machine one thread can be far faster)."""
    return {"keras": ["compiled", "eager"], "torch": ["default", "threads1"]}.get(framework, ["default"])


def run(quick: bool, log) -> dict:
    from ._common import worker

    repeats = 1 if quick else 3
    log("parity: warm-up process (page cache), then baseline memory")
    worker("baseline")
    raw = {"parity": [], "alone": [], "baseline": [], "errors": []}
    for rep in range(repeats):
        result = worker("baseline")
        (raw["errors"] if "error" in result else raw["baseline"]).append(result.get("error", result))
        for model in MODELS:
            result = worker("parity", timeout=900, model=model, layers=True)
            if "error" in result:
                raw["errors"].append(result["error"])
                log("  " + result["error"])
            else:
                raw["parity"].append(result)
                log(f"  [{rep + 1}/{repeats}] parity {model}: {result['total_s']:.1f}s, "
                    f"peak {result['peak_rss_mb']:.0f} MB, passed={result['passed']}")
            for framework in FRAMEWORKS:
                for mode in _alone_modes(framework):
                    result = worker("alone", framework=framework, model=model, mode=mode)
                    if "error" in result:
                        raw["errors"].append(result["error"])
                        log("  " + result["error"])
                        continue
                    raw["alone"].append(result)
                    log(f"  [{rep + 1}/{repeats}] {framework:5s} {mode:8s} alone {model}: import "
                        f"{result['import_s']:.2f}s build {result['build_s']:.2f}s forward {result['forward_s']:.2f}s")
    return {"repeats": repeats, "batch": BATCH, "target_overhead": TARGET_OVERHEAD,
            "models": {m: summarise(m, raw) for m in MODELS},
            "baseline": {"rss_mb": median([b["rss_mb"] for b in raw["baseline"]]),
                         "import_s": median([b["import_s"] for b in raw["baseline"]])},
            "raw": raw, "errors": raw["errors"]}


def _phase_sum(run: dict, phase: str) -> float:
    return sum(run["timings"].get(phase, {}).values())


def summarise(model: str, raw: dict) -> Optional[dict]:
    runs = [r for r in raw["parity"] if r["model"] == model]
    if not runs:
        return None
    phases = ("import", "build", "weights", "forward", "compare", "localise")
    parity = {p: median([_phase_sum(r, p) for r in runs]) for p in phases}
    parity.update({
        "total": median([r["total_s"] for r in runs]),
        "setup": median([r["setup_s"] for r in runs]),  # refnets/parity import, spec, seeded weights
        "report": median([r["report_s"] for r in runs]),
        "per_backend": {p: {b: median([r["timings"].get(p, {}).get(b) for r in runs]) for b in FRAMEWORKS}
                        for p in phases}})
    alone = {}
    for framework in FRAMEWORKS:
        mine = [a for a in raw["alone"] if a["model"] == model and a["framework"] == framework]
        if not mine:
            continue
        modes = {mode: median([a["forward_s"] for a in mine if a["mode"] == mode])
                 for mode in _alone_modes(framework) if any(a["mode"] == mode for a in mine)}
        best = min(modes, key=modes.get)
        # Import and build are the same work in every mode: medians over all of them.
        alone[framework] = {**{k: median([a[k] for a in mine])
                               for k in ("import_s", "build_s", "refnets_import_s", "peak_rss_mb")},
                            "forward_s": modes[best], "mode": best, "forward_by_mode": modes}
    irreducible = {p: sum(a[f"{p}_s"] for a in alone.values()) for p in ("import", "build", "forward")}
    irreducible["total"] = sum(irreducible.values())
    total = parity["total"]
    overhead = total - irreducible["total"]
    # The same run without the forced localisation (what a run whose backends all agree does by default).
    without = total - parity["localise"]
    overhead_without = without - irreducible["total"]
    return {"parity": parity, "alone": alone, "irreducible": irreducible,
            "overhead_s": overhead, "overhead_frac": overhead / total,
            "overhead_without_localise_s": overhead_without, "overhead_without_localise_frac": overhead_without / without,
            "passed": all(r["passed"] for r in runs), "max_rel": runs[0]["max_rel"],
            "memory": memory(model, runs, raw)}


def memory(model: str, runs: List[dict], raw: dict) -> dict:
    import refnets
    from parity.engine.localise import capture_paths

    spec = refnets.get_spec(model)
    weights_mb = refnets.counts(spec).total * 4 / 2 ** 20
    infos = refnets.infer(spec)
    captured_mb = sum(_size(infos[p].out_shape) for p in capture_paths(spec)) * BATCH * 4 / 2 ** 20
    baseline = median([b["rss_mb"] for b in raw["baseline"]])
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


# ------------------------------------------------------------------ report


def verdicts(section: dict) -> List[dict]:
    out = []
    for model, s in section["models"].items():
        if s is None:
            continue
        out.append({"what": f"parity {model} (layers=True): harness overhead",
                    "value": s["overhead_frac"], "target": f"<= {TARGET_OVERHEAD:.0%}",
                    "met": s["overhead_frac"] <= TARGET_OVERHEAD, "percent": True,
                    "also": f"without localisation {s['overhead_without_localise_frac']:.1%}"})
        mem = s["memory"]
        if mem.get("peak_over_expected") is not None:
            out.append({"what": f"parity {model} (layers=True): peak memory / expected",
                        "value": mem["peak_over_expected"], "target": f"<= {TARGET_MEMORY}",
                        "met": mem["peak_over_expected"] <= TARGET_MEMORY,
                        "also": f"{mem['peak_rss_mb']:.0f} MiB of {mem['expected_mb']:.0f} expected" + (
                            "" if mem["before_localise_over_expected"] is None else
                            f"; before the localisation {mem['before_localise_over_expected']:.2f}x")})
    return out


def markdown(section: dict) -> List[str]:
    lines = [
        "### 2. The parity run against its irreducible parts",
        "",
        f"`parity.run(model, backends=torch,mxnet,keras, layers=True)` at 224x224, batch {section['batch']}, "
        "plus the text report, in a fresh process; against each framework alone in a fresh process "
        "(cold import, build the same native model, one forward on its ordinary path: the faster of Keras's "
        f"compiled and eager first call, of torch's default and one-thread pool). Seconds, medians of "
        f"{section['repeats']} runs; "
        "interpreter start-up excluded on both sides. Overhead = parity run - sum of the frameworks' "
        "import + build + forward.",
        "",
    ]
    models = {m: s for m, s in section["models"].items() if s is not None}
    if not models:
        return lines + ["No result.", ""] + [f"Error: `{e}`" for e in section.get("errors", [])]
    header = "| phase | " + " | ".join(f"{m} parity | {m} alone" for m in models) + " |"
    lines += [header, "|---|" + "---|---|" * len(models)]

    def row(label, parity_key=None, alone_key=None, parity_value=None):
        cells = []
        for s in models.values():
            p = s["parity"][parity_key] if parity_key else parity_value(s) if parity_value else None
            a = s["irreducible"][alone_key] if alone_key else None
            cells += ["-" if p is None else f"{p:.2f}", "-" if a is None else f"{a:.2f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("refnets/parity import, spec, seeded weights", "setup")
    row("framework import (3)", "import", "import")
    row("build (3)", "build", "build")
    row("weight transfer (3)", "weights")
    row("forward (3)", "forward", "forward")
    row("compare (2)", "compare")
    row("localisation (3 capturing forwards + per-node compare)", "localise")
    row("report", "report")
    row("**total**", "total", "total")
    cells = []
    for s in models.values():
        cells += [f"**{s['overhead_s']:.2f} s = {s['overhead_frac']:.1%}**", ""]
    lines.append("| **harness overhead** | " + " | ".join(cells) + " |")
    cells = []
    for s in models.values():
        cells += [f"{s['overhead_without_localise_s']:.2f} s = {s['overhead_without_localise_frac']:.1%}", ""]
    lines.append("| overhead without the localisation | " + " | ".join(cells) + " |")
    lines += ["", "Per backend (parity run, s): " + "; ".join(
        f"{m}: " + ", ".join(f"{p} " + "/".join(f"{v:.2f}" if v is not None else "-" for v in s["parity"]["per_backend"][p].values())
                             for p in ("import", "build", "weights", "forward", "localise"))
        for m, s in models.items()) + " (torch/mxnet/keras).",
        "",
        "MXNet initialises a built model asynchronously: in the parity run the tail of its build's "
        "initialisation is counted in *weight transfer* (the first `set_data` waits for it); alone, the build "
        "waits for it (`mx.nd.waitall()`).",
        "",
        "Importing mxnet sets the OpenMP pool that torch shares to one thread, so in the parity run torch "
        "computes on one thread; alone, its forward is timed with its default thread count and with one "
        "thread, and the faster counts.",
        "",
        "Alone (s): " + "; ".join(
            f"{m}: " + ", ".join(
                f"{f} {a['import_s']:.2f}+{a['build_s']:.2f}+{a['forward_s']:.2f}"
                + (f" (forward {a['mode']}; " + ", ".join(f"{k} {v:.2f}" for k, v in a["forward_by_mode"].items()) + ")"
                   if len(a["forward_by_mode"]) > 1 else "")
                for f, a in s["alone"].items())
            for m, s in models.items()) + " (import + build + forward).",
        ""]
    lines += [
        "### 3. Peak memory of the parity run",
        "",
        "Peak RSS (`ru_maxrss`) of the parity process above, against the frameworks' baseline (RSS of a fresh "
        "process after importing the three backends) plus the three native models' weights (float32, BatchNorm "
        "statistics included). MiB.",
        "",
        "| model | baseline | + 3 x weights | = expected | peak before localisation | peak | peak / expected | "
        "captured activations per backend |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, s in models.items():
        mem = s["memory"]
        lines.append(f"| {m} | {mem['baseline_rss_mb']:.0f} | {mem['weights_mb_three']:.0f} | {mem['expected_mb']:.0f} | "
                     f"{mem['peak_before_localise_mb']:.0f} ({mem['before_localise_over_expected']:.2f}x) | "
                     f"{mem['peak_rss_mb']:.0f} | {mem['peak_over_expected']:.2f}x | "
                     f"{mem['captured_activations_mb_per_backend']:.0f} |")
    lines += ["", "The localisation holds every node's output (batch 2, float32) of the reference and of the "
              "backend being compared, one backend at a time; the right-hand column is one such set. Captures are "
              "not copied where the framework's own memory can be used (torch tensors, views of Keras's NHWC "
              "outputs); MXNet's are copied once per NDArray."]
    for error in section.get("errors", []):
        lines.append(f"\nError: `{error}`")
    return lines + [""]
