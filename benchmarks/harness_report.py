"""Sections 2 and 3 as `python -m benchmarks` shows them: the verdicts against the
targets and the markdown tables of `harness.run`'s measurements (see `harness`)."""

from __future__ import annotations

from typing import List

from .harness import TARGET_MEMORY, TARGET_OVERHEAD, run  # noqa: F401 (run: the section's entry point)

MODE_WORDS = {"in-process": "in one process (`parity.run`, the library's default)",
              "workers": "backends in worker processes (the CLI's default)"}


def _results(section: dict):
    """(model, mode, summary) of every measured run."""
    for model, by_mode in section["models"].items():
        for mode, s in by_mode.items():
            if s is not None:
                yield model, mode, s


def verdicts(section: dict) -> List[dict]:
    out = []
    for model, mode, s in _results(section):
        what = f"parity {model} (layers=True, {mode})"
        out.append({"what": f"{what}: harness overhead", "value": s["overhead_frac"],
                    "target": f"<= {TARGET_OVERHEAD:.0%}", "met": s["overhead_frac"] <= TARGET_OVERHEAD, "percent": True,
                    "also": f"without localisation {s['overhead_without_localise_frac']:.1%}; CPU seconds "
                            f"{s['parity']['cpu']:.1f} against {s['irreducible']['cpu']:.1f} alone "
                            f"({s['cpu_overhead_frac']:.1%} the harness's)"})
        mem = s["memory"]
        if mem.get("peak_over_expected") is not None:
            before = mem["before_localise_over_expected"]
            out.append({"what": f"{what}: peak memory / expected", "value": mem["peak_over_expected"],
                        "target": f"<= {TARGET_MEMORY}", "met": mem["peak_over_expected"] <= TARGET_MEMORY,
                        "also": f"{mem['peak_rss_mb']:.0f} MiB of {mem['expected_mb']:.0f} expected"
                                + ("" if before is None else f"; before the localisation {before:.2f}x")})
    return out


def _phase_table(section: dict) -> List[str]:
    results = list(_results(section))
    header = "| phase | " + " | ".join(f"{m} {mode}" for m, mode, _ in results) + " | " + " | ".join(
        f"{m} alone" for m in section["models"]) + " |"
    lines = [header, "|---|" + "---|" * (len(results) + len(section["models"]))]
    alone = {m: next((s for mm, _, s in results if mm == m), None) for m in section["models"]}

    def row(label, key, alone_key=None):
        cells = [f"{s['parity'][key]:.2f}" for _, _, s in results]
        cells += ["-" if alone_key is None or alone[m] is None else f"{alone[m]['irreducible'][alone_key]:.2f}"
                  for m in section["models"]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("refnets/parity import, spec (process start to first import)", "setup")
    row("framework import (3)", "import", "import")
    row("build (3)", "build", "build")
    row("seeded weights + weight transfer (3)", "weights")
    row("forward (3) + compare", "forward", "forward")
    row("localisation (capturing forwards side by side, compared node by node; with layers=True the forwards)",
        "localise")
    row("report", "report")
    row("**total (wall)**", "total", "total")
    row("CPU seconds (workers included)", "cpu", "cpu")
    lines.append("| **harness overhead (wall)** | " + " | ".join(
        f"**{s['overhead_s']:.2f} s = {s['overhead_frac']:.1%}**" for _, _, s in results) + " |" * (len(section["models"]) + 1))
    lines.append("| overhead without the localisation (plain forwards at their alone figures) | " + " | ".join(
        f"{s['overhead_without_localise_s']:.2f} s = {s['overhead_without_localise_frac']:.1%}" for _, _, s in results)
        + " |" * (len(section["models"]) + 1))
    lines.append("| harness's CPU seconds | " + " | ".join(
        f"{s['cpu_overhead_s']:.2f} s = {s['cpu_overhead_frac']:.1%}" for _, _, s in results)
        + " |" * (len(section["models"]) + 1))
    return lines


def _alone_line(section: dict) -> str:
    parts = []
    for model, by_mode in section["models"].items():
        s = next((v for v in by_mode.values() if v is not None), None)
        if s is None:
            continue
        parts.append(f"{model}: " + ", ".join(
            f"{f} {a['import_s']:.2f}+{a['build_s']:.2f}+{a['forward_s']:.2f}"
            + (f" (forward {a['mode']}; " + ", ".join(f"{k} {v:.2f}" for k, v in a["forward_by_mode"].items()) + ")"
               if len(a["forward_by_mode"]) > 1 else "")
            for f, a in s["alone"].items()))
    return "Alone (s): " + "; ".join(parts) + " (import + build + forward)."


def markdown(section: dict) -> List[str]:
    lines = [
        "### 2. The parity run against its irreducible parts",
        "",
        f"`parity.run(model, backends=torch,mxnet,keras, layers=True)` at 224x224, batch {section['batch']}, plus the "
        "text report, in a fresh process, both ways a run can go: " + "; ".join(
            f"*{m}*: {MODE_WORDS[m]}" for m in section["modes"]) + ". Against each framework alone in a fresh process "
        "(cold import, build the same native model, one forward on its ordinary path: the faster of Keras's compiled "
        "and eager first call, of torch's default and one-thread pool). Wall seconds, medians of "
        f"{section['repeats']} runs; interpreter start-up excluded on both sides. Phases are walls between the run's "
        "progress marks (with workers the backends' steps overlap). Overhead = parity run - sum of the frameworks' "
        "import + build + forward; the CPU row counts every process's seconds, whatever the overlap.",
        "",
    ]
    if not list(_results(section)):
        return lines + ["No result.", ""] + [f"Error: `{e}`" for e in section.get("errors", [])]
    lines += _phase_table(section)
    lines += ["", _alone_line(section), ""]
    lines += [
        "### 3. Peak memory of the parity run",
        "",
        "In one process: its peak RSS (`ru_maxrss`) against the frameworks' baseline (a fresh process after importing "
        "the three backends). With workers: the sampled peak of the summed RSS of the parent and its workers against "
        "the baseline of that tree (the three workers started, their frameworks imported). Both plus the three native "
        "models' weights (float32, BatchNorm statistics included). MiB.",
        "",
        "| model | way | baseline | + 3 x weights | = expected | peak before localisation | peak | peak / expected | "
        "captured activations per backend |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, mode, s in _results(section):
        mem = s["memory"]
        before = "-" if mem["peak_before_localise_mb"] is None else (
            f"{mem['peak_before_localise_mb']:.0f} ({mem['before_localise_over_expected']:.2f}x)")
        lines.append(f"| {model} | {mode} | {mem['baseline_rss_mb']:.0f} | {mem['weights_mb_three']:.0f} | "
                     f"{mem['expected_mb']:.0f} | {before} | {mem['peak_rss_mb']:.0f} | "
                     f"{mem['peak_over_expected']:.2f}x | {mem['captured_activations_mb_per_backend']:.0f} |")
    lines += ["", "The localisation runs the reference's capturing forward beside each other backend's in turn and "
              "compares each node as soon as both have it (`parity/engine/lockstep.py`), so it holds the lag between "
              "the two, not a backend's whole set of captures (the right-hand column)."]
    for error in section.get("errors", []):
        lines.append(f"\nError: `{error}`")
    return lines + [""]
