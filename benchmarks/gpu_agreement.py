"""float32 on the GPU against float64 on the CPU, with TF32 off (our default) and on.

    PYTHONPATH=. python -m benchmarks.gpu_agreement [--models resnet50,vgg16,densenet121] [--batch 2] [--out DIR]

For each model at its default input (224x224): seeded canonical weights (random
BatchNorm statistics included), one seeded batch; the reference is torch on the
CPU in float64. Figures are max|out - ref| / max|ref| of the logits for
- torch on CUDA in float64 (the GPU's kernels at full precision),
- torch on CUDA in float32 with TF32 off (`--device cuda`) and on (`--tf32`),
- torch on the CPU in float32 (the float32 floor without a GPU),
and the numpy reference in float64 against the same CPU float64 reference.
Needs a CUDA device. Writes gpu_agreement.json and gpu_agreement.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import refnets
from refnets import backends
from refnets import weights as W

MODELS = ("resnet50", "vgg16", "densenet121")


def relative(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def logits(label: str, spec, canonical, x, dtype: str, tf32: bool = False) -> np.ndarray:
    impl = backends.get(label, tf32=tf32)
    net = impl.build(spec, dtype=dtype)
    impl.set_weights(net, W.cast(canonical, dtype))
    out, _ = impl.forward(net, x.astype(dtype))
    return out


def measure(model: str, batch: int, with_numpy: bool) -> dict:
    spec = refnets.get_spec(model)
    canonical = W.init(spec, seed=0, dtype="float64")  # BatchNorm statistics drawn at random too
    x = np.random.default_rng(1).standard_normal((batch,) + tuple(spec.input_shape))
    start = time.perf_counter()
    ref = logits("torch", spec, canonical, x, "float64")
    row = {"model": model, "input": "x".join(map(str, (batch,) + tuple(spec.input_shape))),
           "cuda_float64": relative(logits("torch:cuda", spec, canonical, x, "float64"), ref),
           "cuda_float32_tf32_off": relative(logits("torch:cuda", spec, canonical, x, "float32"), ref),
           "cuda_float32_tf32_on": relative(logits("torch:cuda", spec, canonical, x, "float32", tf32=True), ref),
           "cpu_float32": relative(logits("torch", spec, canonical, x, "float32"), ref)}
    if with_numpy:
        row["numpy_float64"] = relative(logits("numpy", spec, canonical, x, "float64"), ref)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


COLUMNS = ("cuda_float64", "cuda_float32_tf32_off", "cuda_float32_tf32_on", "cpu_float32", "numpy_float64")


def markdown(rows, device: str) -> str:
    lines = [f"max|out - ref| / max|ref| against torch float64 on the CPU; GPU: {device}", "",
             "| model | input | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{row[c]:.1e}" if c in row else "-" for c in COLUMNS]
        lines.append(f"| {row['model']} | {row['input']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--no-numpy", action="store_true", help="skip the numpy reference (slow at 224x224)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args(argv)
    device = backends.get("torch:cuda").describe_device()
    rows = []
    for model in args.models.split(","):
        rows.append(measure(model, args.batch, not args.no_numpy))
        print(json.dumps(rows[-1]), flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_agreement.json"), "w") as handle:
        json.dump({"device": device, "versions": backends.get("torch:cuda").versions(), "rows": rows}, handle, indent=2)
    with open(os.path.join(args.out, "gpu_agreement.md"), "w") as handle:
        handle.write(markdown(rows, device))
    print(markdown(rows, device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
