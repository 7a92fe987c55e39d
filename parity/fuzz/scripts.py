"""The standalone reproducer scripts: a generated model module (`refnets.codegen`,
which imports only its framework, numpy and the standard library) followed by a
main block that builds the model in the reproducer's dtype, loads
weights.safetensors and input.npy from the script's directory, runs it and
compares the output with reference.npy (the numpy computation) under the parity
bar, exiting 1 when they disagree."""

from __future__ import annotations

_COMPARE = '''

def compare_with_reference(out, here):
    """Print the error against reference.npy; True when within the bar."""
    import numpy
    ref = numpy.load(os.path.join(here, "reference.npy"))
    if out.shape != ref.shape:
        print(f"DISAGREE: output shape {out.shape}, numpy reference {ref.shape}")
        return False
    diff = float(numpy.max(numpy.abs(out.astype("float64") - ref.astype("float64")))) if out.size else 0.0
    scale = float(numpy.max(numpy.abs(ref))) if ref.size else 0.0
    bar = ATOL + RTOL * scale
    verdict = "agree" if numpy.all(numpy.isfinite(out)) and diff <= bar else "DISAGREE"
    print(f"{verdict}: max|out - ref| = {diff:.6g}, max|ref| = {scale:.6g}, bar {bar:.6g} ({DTYPE})")
    return verdict == "agree"
'''

_TORCH = '''

def run_reproducer(here):
    import numpy
    model = build()
    model = model.double() if DTYPE == "float64" else model.float()
    load_canonical(model, os.path.join(here, "weights.safetensors"))
    x = torch.from_numpy(numpy.load(os.path.join(here, "input.npy")))
    with torch.no_grad():
        return model(x).numpy()
'''

_KERAS = '''

def run_reproducer(here):
    import numpy
    keras.config.set_floatx(DTYPE)
    model = build()
    load_canonical(model, os.path.join(here, "weights.safetensors"))
    x = numpy.load(os.path.join(here, "input.npy"))
    out = numpy.asarray(model(numpy.transpose(x, (0, 2, 3, 1)), training=False))
    return numpy.transpose(out, (0, 3, 1, 2)) if out.ndim == 4 else out  # channels last -> first
'''

_MXNET = '''

def run_reproducer(here):
    import numpy
    model = build()
    model.cast(DTYPE)
    load_canonical(model, os.path.join(here, "weights.safetensors"))
    x = mx.nd.array(numpy.load(os.path.join(here, "input.npy")), dtype=DTYPE)
    return model(x).asnumpy()
'''

_MAIN = '''

if __name__ == "__main__":
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    sys.exit(0 if compare_with_reference(run_reproducer(here), here) else 1)
'''

RUNNERS = {"torch": _TORCH, "keras": _KERAS, "mxnet": _MXNET}


def script_for(framework: str, module: str, dtype: str, rtol: float, atol: float) -> str:
    header = f"\nimport os  # noqa: E402\n\nDTYPE = {dtype!r}\nRTOL = {rtol!r}\nATOL = {atol!r}\n"
    return module.rstrip("\n") + "\n" + header + _COMPARE + RUNNERS[framework] + _MAIN
