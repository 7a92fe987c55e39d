"""Section 1: forward latency of our models against the frameworks' own zoo models.

Each framework is measured in its own fresh process (one framework loaded, its
default thread pool), at 224x224, batch 1 and 16, inference mode, on each
framework's best ordinary path:

- torch: `torch.inference_mode()`, eval mode;
- mxnet: a hybridized Gluon block (default `hybridize()`, as refnets builds it),
  `autograd.pause(train_mode=False)`, `wait_to_read()` (MXNet runs asynchronously);
- keras: a `tf.function` with a fixed input signature around
  `model(x, training=False)` (what the keras backend's `forward` runs), NHWC.

Ours is timed twice: the native call (the framework tensor in, exactly as the
zoo model is called) and the backend's `forward()` (channels-first numpy in and
out: conversion, transposes, the copy back). The ratio in the table is
native/zoo (the same call path on both sides); forward()/zoo is reported next to
it. Rounds alternate the order of the three calls; medians after warm-up.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import subprocess
from typing import Dict, List, Optional

import numpy as np

from ._common import interleaved, paired_ratio, peak_rss_mb

SIZE = 224
TARGET = 1.05

# (pair id, framework, our model, the layout option it needs (None: default), zoo model, note)
PAIRS = [
    ("keras/resnet50v2", "keras", "resnet50v2", None, "keras.applications.ResNet50V2",
     "zoo built with weights=None, classifier_activation=None (ours has no softmax)"),
    ("mxnet/resnet18", "mxnet", "resnet18", "gluon", "gluon model_zoo resnet18_v1", ""),
    ("mxnet/resnet50v2", "mxnet", "resnet50v2", "gluon", "gluon model_zoo resnet50_v2", ""),
    ("torch/resnet18", "torch", "resnet18", None, "torchvision resnet18", ""),
    ("torch/resnet50", "torch", "resnet50", None, "torchvision resnet50", ""),
]
ZOO = {"keras/resnet50v2": "ResNet50V2", "mxnet/resnet18": "resnet18_v1", "mxnet/resnet50v2": "resnet50_v2",
       "torch/resnet18": "resnet18", "torch/resnet50": "resnet50"}


def has_option(model: str, key: str, value) -> bool:
    import refnets

    try:
        refnets.get_spec(model, **{key: value})
        return True
    except refnets.BadOptionError:
        return False


# framework -> the interpreter its worker runs in (`python -m benchmarks --python torch=PATH`); default: this one
PYTHONS: Dict[str, str] = {}


def torchvision_status() -> Optional[str]:
    """None when torchvision is installed beside the torch the torch worker runs, else why not."""
    python = PYTHONS.get("torch")
    if python is None:
        found = importlib.util.find_spec("torchvision") is not None
    else:
        probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)"
        found = subprocess.run([python, "-c", probe], capture_output=True).returncode == 0
    if not found:
        return ("torchvision is not installed beside this torch (none is installable beside torch 2.13.0; "
                "run the torch rows in a venv that has it: --python torch=PATH)")
    return None  # a broken install is caught by the worker, which reports the import error


def plan(quick: bool) -> List[dict]:
    """The pairs to measure, with their status decided before any framework loads:
    `measure` (the ratio counts against the target), `pending` (the layout option
    ours needs is not there yet: ours is timed in its default layout, shown for
    information only) or `no-zoo` (ours alone: native vs forward())."""
    tv = torchvision_status()
    rows = []
    for pair, framework, model, layout, zoo, note in PAIRS:
        options, status, notes = {}, "measure", [note] if note else []
        if layout is not None:
            if has_option(model, "layout", layout):
                options = {"layout": layout}
            elif model == "resnet18":
                notes.append("option layout=gluon not available yet: default layout used (torchvision's "
                             "basic blocks are the same computation as Gluon's resnet18_v1)")
            else:
                status = "pending"
                notes.append("option layout=gluon not available yet: ours timed in its default (Keras) "
                             "layout, a different computation (stride in the last block of a stage); "
                             "not assessed")
        if framework == "torch" and tv is not None:
            status = "no-zoo"
            notes.append(tv)
        rows.append({"pair": pair, "framework": framework, "model": model, "options": options, "zoo": zoo,
                     "status": status, "notes": notes})
    return rows


def repeats(quick: bool) -> dict:
    return {"warmup": 2, "repeats": {"1": 5 if quick else 40, "16": 2 if quick else 7}}


# ------------------------------------------------------------------ in the worker


class _Framework:
    """One framework's side of a pair: build ours and the zoo model, the timed calls,
    and the zoo's weights in the canonical contract (to run ours on the very same
    values and check that both compute the same function)."""

    graph_ops = None  # model -> {op type: count}, where the framework has a graph to read

    def __init__(self, pair: dict):
        self.pair = pair

    def build_ours(self):
        import refnets

        return refnets.build(self.pair["model"], backend=self.name, **self.pair["options"])


class _Keras(_Framework):
    name = "keras"

    def __init__(self, pair):
        super().__init__(pair)
        import keras
        import tensorflow as tf
        from refnets import backends

        self.keras, self.tf, self.backend = keras, tf, backends.get("keras")
        self._compiled = {}
        self.versions = {"tensorflow": tf.__version__, "keras": keras.__version__}

    def compiled(self, model):
        """One tf.function per model (traced once per input shape)."""
        if id(model) in self._compiled:
            return self._compiled[id(model)][1]
        tf = self.tf
        signature = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype)

        @tf.function(input_signature=[signature])
        def run(x):
            return model(x, training=False)

        self._compiled[id(model)] = (model, run)
        return run

    def build_zoo(self):
        return self.keras.applications.ResNet50V2(weights=None, classifier_activation=None)

    def calls(self, ours, zoo, x_nchw):
        x = self.tf.constant(np.ascontiguousarray(np.transpose(x_nchw, (0, 2, 3, 1))))
        ours_fn = self.compiled(ours)
        out = {"ours": lambda: ours_fn(x).numpy(), "ours_forward": lambda: self.backend.forward(ours, x_nchw)}
        if zoo is not None:
            zoo_fn = self.compiled(zoo)
            out["zoo"] = lambda: zoo_fn(x).numpy()
        return out

    def zoo_output(self, zoo, x_nchw):
        return self.compiled(zoo)(self.tf.constant(np.transpose(x_nchw, (0, 2, 3, 1)))).numpy()

    def zoo_weights(self, zoo):
        from refnets.zoo_import import from_keras

        return from_keras(zoo, self.pair["model"], **self.pair["options"])

    def zoo_params(self, zoo):
        return int(zoo.count_params())

    def graph_ops(self, model):
        """Op type -> count in the traced inference graph (bookkeeping ops left out)."""
        graph = self.compiled(model).get_concrete_function().graph
        skip = {"Const", "Placeholder", "ReadVariableOp", "NoOp", "Identity"}
        return dict(collections.Counter(op.type for op in graph.get_operations() if op.type not in skip))


class _MXNet(_Framework):
    name = "mxnet"

    def __init__(self, pair):
        super().__init__(pair)
        import mxnet as mx
        from mxnet.gluon.model_zoo import vision
        from refnets import backends

        self.mx, self.vision, self.backend = mx, vision, backends.get("mxnet")
        self.versions = {"mxnet": mx.__version__}

    def run(self, net, x):
        with self.mx.autograd.pause(train_mode=False):
            out = net(x)
        out.wait_to_read()
        return out

    def build_ours(self):
        net = super().build_ours()
        self.mx.nd.waitall()  # Gluon initialises asynchronously: count the whole build
        return net

    def build_zoo(self):
        mx = self.mx
        net = getattr(self.vision, ZOO[self.pair["pair"]])(pretrained=False)
        # The initialiser refnets' build uses (the values are replaced by the same ones in both anyway).
        net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=mx.cpu())
        net.hybridize()
        mx.nd.waitall()
        return net

    def calls(self, ours, zoo, x_nchw):
        x = self.mx.nd.array(x_nchw, ctx=self.mx.cpu())
        out = {"ours": lambda: self.run(ours, x), "ours_forward": lambda: self.backend.forward(ours, x_nchw)}
        if zoo is not None:
            out["zoo"] = lambda: self.run(zoo, x)
        return out

    def zoo_output(self, zoo, x_nchw):  # also completes the zoo's deferred initialisation
        return self.run(zoo, self.mx.nd.array(x_nchw)).asnumpy()

    def zoo_weights(self, zoo):
        from refnets.zoo_import import from_gluon

        return from_gluon(zoo, self.pair["model"], **self.pair["options"])

    def zoo_params(self, zoo):
        return int(sum(np.prod(p.shape) for p in zoo.collect_params().values()))

    def graph_ops(self, model):
        """Operator -> count in the hybridized (symbolic) graph."""
        nodes = json.loads(model(self.mx.sym.var("data")).tojson())["nodes"]
        return dict(collections.Counter(n["op"] for n in nodes if n["op"] != "null"))


class _Torch(_Framework):
    name = "torch"

    def __init__(self, pair):
        super().__init__(pair)
        import torch
        from refnets import backends

        self.torch, self.backend = torch, backends.get("torch")
        self.versions = {"torch": torch.__version__, "threads": torch.get_num_threads()}

    def run(self, net, x):
        with self.torch.inference_mode():
            return net(x)

    def build_zoo(self):
        if self.pair["status"] == "no-zoo":
            return None
        import torchvision

        return getattr(torchvision.models, ZOO[self.pair["pair"]])(weights=None).eval()

    def calls(self, ours, zoo, x_nchw):
        x = self.torch.from_numpy(x_nchw)
        out = {"ours": lambda: self.run(ours, x), "ours_forward": lambda: self.backend.forward(ours, x_nchw)}
        if zoo is not None:
            out["zoo"] = lambda: self.run(zoo, x)
        return out

    def zoo_output(self, zoo, x_nchw):
        return self.run(zoo, self.torch.from_numpy(x_nchw)).numpy()

    def zoo_weights(self, zoo):
        from refnets.zoo_import import from_torchvision

        return from_torchvision(zoo, self.pair["model"], **self.pair["options"])

    def zoo_params(self, zoo):
        return int(sum(p.numel() for p in zoo.parameters())
                   + sum(b.numel() for n, b in zoo.named_buffers() if n.endswith(("running_mean", "running_var"))))


SETUP = {"keras": _Keras, "mxnet": _MXNet, "torch": _Torch}


def _same_function(fw: _Framework, ours, zoo) -> dict:
    """Copy the zoo model's weights into ours (refnets.zoo_import) and compare the
    outputs on one input: max|ours - zoo| / max|zoo|. From then on both run on
    the very same values."""
    x = np.random.default_rng(7).standard_normal((2, 3, SIZE, SIZE)).astype("float32")
    try:
        reference = fw.zoo_output(zoo, x)
        fw.backend.set_weights(ours, fw.zoo_weights(zoo))
        got, _ = fw.backend.forward(ours, x)
    except Exception as err:  # the importer is optional here: report, keep timing
        return {"error": f"{type(err).__name__}: {err}"}
    return {"max_rel": float(np.max(np.abs(got - reference)) / np.max(np.abs(reference)))}


def measure(framework: str, pairs: List[dict], warmup: int, repeats: Dict[str, int]) -> dict:
    """Worker: every pair of one framework, in this (fresh) process."""
    import time

    import refnets

    rows = []
    versions = {}
    for pair in pairs:
        fw = SETUP[framework](pair)
        versions = fw.versions
        start = time.perf_counter()
        ours = fw.build_ours()
        build_ours_s = time.perf_counter() - start
        zoo, build_zoo_s, zoo_error = None, None, None
        start = time.perf_counter()
        try:
            zoo = fw.build_zoo()
            build_zoo_s = time.perf_counter() - start if zoo is not None else None
        except Exception as err:  # e.g. a torchvision built for another torch
            zoo_error = f"{type(err).__name__}: {err}"
        spec = refnets.get_spec(pair["model"], **pair["options"])
        row = dict(pair, build_ours_s=build_ours_s, build_zoo_s=build_zoo_s, macs=refnets.counts(spec).macs,
                   params_ours=fw.backend.count_params(ours)[1], batches={})
        if zoo_error:
            row["status"] = "no-zoo"
            row["notes"] = row["notes"] + [f"zoo model failed: {zoo_error}"]
        if zoo is not None:
            row["same_function"] = _same_function(fw, ours, zoo)
            row["params_zoo"] = fw.zoo_params(zoo)
            if fw.graph_ops is not None:
                ours_ops, zoo_ops = fw.graph_ops(ours), fw.graph_ops(zoo)
                row["graph_ops"] = {"ours": ours_ops, "zoo": zoo_ops,
                                    "differ": {op: [ours_ops.get(op, 0), zoo_ops.get(op, 0)]
                                               for op in sorted(set(ours_ops) | set(zoo_ops))
                                               if ours_ops.get(op, 0) != zoo_ops.get(op, 0)}}
        for batch in (1, 16):
            x = np.random.default_rng(batch).standard_normal((batch, 3, SIZE, SIZE)).astype("float32")
            n = repeats[str(batch)] if zoo is not None else max(2, repeats[str(batch)] // 3)  # no ratio: fewer
            timed = interleaved(fw.calls(ours, zoo, x), warmup, n)
            row.setdefault("repeats", {})[str(batch)] = n
            cell = {"timings": timed}
            if "zoo" in timed:
                cell["ratio_native"] = timed["ours"]["median_s"] / timed["zoo"]["median_s"]
                cell["ratio_forward"] = timed["ours_forward"]["median_s"] / timed["zoo"]["median_s"]
                cell["paired_ratio_native"] = paired_ratio(timed["ours"]["samples_s"], timed["zoo"]["samples_s"])
                cell["min_ratio_native"] = timed["ours"]["min_s"] / timed["zoo"]["min_s"]
            cell["forward_overhead_s"] = timed["ours_forward"]["median_s"] - timed["ours"]["median_s"]
            row["batches"][str(batch)] = cell
        rows.append(row)
        del ours, zoo
    return {"rows": rows, "versions": versions, "peak_rss_mb": peak_rss_mb()}


# ------------------------------------------------------------------ in the parent


def run(quick: bool, log) -> dict:
    from ._common import worker

    settings = repeats(quick)
    pairs = plan(quick)
    rows, versions, errors = [], {}, []
    for framework in SETUP:
        mine = [p for p in pairs if p["framework"] == framework]
        log(f"latency: {framework} ({', '.join(p['pair'] for p in mine)})")
        result = worker("latency", timeout=900, python=PYTHONS.get(framework), framework=framework, pairs=mine,
                        **settings)
        if "error" in result:
            errors.append(result["error"])
            log("  " + result["error"])
            continue
        versions[framework] = dict(result["versions"], python=PYTHONS.get(framework, "this interpreter"))
        for row in result["rows"]:
            rows.append(row)
            for batch, cell in row["batches"].items():
                t = cell["timings"]
                zoo = f"zoo {t['zoo']['median_s'] * 1e3:8.1f} ms  ratio {cell['ratio_native']:.3f}" \
                    if "zoo" in t else "zoo -"
                log(f"  {row['pair']:18s} b{batch:>2s}  ours {t['ours']['median_s'] * 1e3:8.1f} ms  "
                    f"forward() {t['ours_forward']['median_s'] * 1e3:8.1f} ms  {zoo}")
    return {"settings": settings, "target_ratio": TARGET, "rows": rows, "versions": versions, "errors": errors}


def verdicts(section: dict) -> List[dict]:
    out = []
    for row in section["rows"]:
        for batch, cell in row["batches"].items():
            if row["status"] != "measure" or "ratio_native" not in cell:
                continue
            out.append({"what": f"{row['pair']} batch {batch}: ours/zoo",
                        "value": cell["ratio_native"], "target": f"<= {TARGET}",
                        "met": cell["ratio_native"] <= TARGET,
                        "also": f"forward()/zoo {cell['ratio_forward']:.3f}; median of per-round ratios "
                                f"{cell['paired_ratio_native']:.3f}; best/best {cell['min_ratio_native']:.3f}"})
    return out


def _ms(s: Optional[float]) -> str:
    return "-" if s is None else f"{s * 1e3:.1f}"


def markdown(section: dict) -> List[str]:
    s = section["settings"]
    lines = [
        "### 1. Forward latency: ours vs the framework's zoo model",
        "",
        f"224x224, inference mode, medians of {s['repeats']['1']} (batch 1) / {s['repeats']['16']} (batch 16) "
        f"interleaved runs after {s['warmup']} warm-up calls (a third as many runs where there is no zoo model), "
        "each framework in its own process. "
        "*ours* is the native call (framework tensor in, as the zoo model is called); *forward()* is the "
        "backend's `forward` (channels-first numpy in and out). **ratio = ours / zoo** (native vs native; "
        f"target <= {section['target_ratio']}); forward()/zoo next to it.",
        "",
        "Each framework's worker ran in: " + "; ".join(
            f"{f} {v.get(f, '?')} ({v.get('python', 'this interpreter')})"
            for f, v in section.get("versions", {}).items()) + ".",
        "",
        "| pair | batch | ours ms | forward() ms | zoo ms | ratio | forward()/zoo | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in section["rows"]:
        label = row["pair"] + "".join(f" {k}={v}" for k, v in row["options"].items())
        for batch, cell in row["batches"].items():
            t = cell["timings"]
            zoo = t.get("zoo", {}).get("median_s")
            ratio = cell.get("ratio_native")
            status = {"measure": "ok" if ratio is not None and ratio <= section["target_ratio"] else "MISSED",
                      "pending": "pending (info only)", "no-zoo": "no zoo"}[row["status"]]
            lines.append(f"| {label} | {batch} | {_ms(t['ours']['median_s'])} | {_ms(t['ours_forward']['median_s'])}"
                         f" | {_ms(zoo)} | {'-' if ratio is None else f'{ratio:.3f}'}"
                         f" | {'-' if ratio is None else format(cell['ratio_forward'], '.3f')} | {status} |")
    lines += ["", "Same computation: the zoo model's weights are copied into ours (`refnets.zoo_import`) before "
              "timing, so both run on the very same values; *same function* is max|ours - zoo| / max|zoo| on one "
              "batch.", "",
              "| pair | zoo | params ours / zoo | same function | graph ops that differ (ours / zoo) | "
              "build ours / zoo s | notes |",
              "|---|---|---|---|---|---|---|"]
    for row in section["rows"]:
        params = f"{row['params_ours']:,} / {row['params_zoo']:,}" if "params_zoo" in row else f"{row['params_ours']:,} / -"
        build = f"{row['build_ours_s']:.2f} / " + ("-" if row["build_zoo_s"] is None else f"{row['build_zoo_s']:.2f}")
        same = row.get("same_function", {})
        same = f"{same['max_rel']:.1e}" if "max_rel" in same else same.get("error", "-")
        ops = row.get("graph_ops")
        ops = "-" if ops is None else ", ".join(f"{op} {a}/{b}" for op, (a, b) in ops["differ"].items()) or "none"
        lines.append(f"| {row['pair']} | {row['zoo']} | {params} | {same} | {ops} | {build} | "
                     f"{'; '.join(row['notes']) or '-'} |")
    for error in section.get("errors", []):
        lines.append(f"\nError: `{error}`")
    return lines + [""]

