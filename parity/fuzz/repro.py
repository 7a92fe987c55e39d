"""A shrunk disagreement as files a framework's bug tracker would accept.

One directory per reproducer:

    spec.json            the refnets spec file (`refnets.specfile`)
    weights.safetensors  the canonical weights (names are the spec's paths)
    input.npy            the input, channels first (N, C, H, W)
    reference.npy        the numpy reference's output (refnets' numpy backend)
    output-<backend>.npy the backend's output
    verdict.json         backend, dtype, error, tolerance, versions, the class of the finding
    repro_<framework>.py standalone: the model in that framework alone (source from
                         `refnets.codegen`, no refnets import), the weights, the input,
                         and the comparison with reference.npy; exits 1 when it disagrees

`rerun(directory)` reads a reproducer back and runs it again through refnets: the
same verdict is the check that the files reproduce the finding.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from typing import Dict, Optional

import numpy as np

from refnets import backends, codegen, specfile
from refnets import weights as W

from ..engine import tolerances
from ..outputs import write_atomic
from .run import Problem, Verdict, evaluate, reference
from .scripts import script_for

SCRIPT_FRAMEWORKS = ("torch", "keras", "mxnet")


def write_file(path: str, data) -> None:
    write_atomic(path, data)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def save(directory: str, problem: Problem, verdict: Verdict, finding: Dict[str, object]) -> Dict[str, str]:
    """Write the reproducer of `verdict` on `problem` into `directory`; returns file
    name -> what it is, including scripts that could not be generated. The files are
    written into a temporary directory beside it, renamed into place when complete
    (an interrupted run leaves no half-written reproducer)."""
    partial = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.", dir=os.path.dirname(directory) or ".")
    try:
        written = _write(partial, problem, verdict, finding)
        os.chmod(partial, 0o755)  # mkdtemp makes it private
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        os.replace(partial, directory)
    finally:
        if os.path.isdir(partial):
            shutil.rmtree(partial)
    return written


def _write(directory: str, problem: Problem, verdict: Verdict, finding: Dict[str, object]) -> Dict[str, str]:
    dtype = verdict.dtype
    ref = reference(problem, dtype)
    write_file(os.path.join(directory, "spec.json"), specfile.dumps(problem.model))
    W.save(os.path.join(directory, "weights.safetensors"), problem.weights(dtype))
    write_file(os.path.join(directory, "input.npy"), _npy(problem.input(dtype)))
    write_file(os.path.join(directory, "reference.npy"), _npy(ref))
    written = {"spec.json": "spec", "weights.safetensors": "weights", "input.npy": "input",
               "reference.npy": "numpy reference output"}
    if verdict.output is not None:
        name = f"output-{verdict.backend}.npy"
        write_file(os.path.join(directory, name), _npy(np.asarray(verdict.output)))
        written[name] = f"{verdict.backend} output"
    rtol, atol = tolerances.DEFAULTS[dtype]
    for framework in SCRIPT_FRAMEWORKS:
        source = _script(problem, framework, dtype, rtol, atol)
        if source is None:
            written[f"repro_{framework}.py"] = "not generated (refnets.codegen cannot write this spec)"
            continue
        write_file(os.path.join(directory, f"repro_{framework}.py"), source)
        written[f"repro_{framework}.py"] = f"standalone {framework} script"
    record = {"backend": verdict.backend, "dtype": dtype, "status": verdict.status, "max_rel": verdict.max_rel,
              "detail": verdict.detail, "rtol": rtol, "atol": atol, "batch": problem.batch,
              "weight_seed": problem.weight_seed, "input_seed": problem.input_seed,
              "versions": _versions(verdict.backend), "files": written, **finding}
    write_file(os.path.join(directory, "verdict.json"), json.dumps(record, indent=2, default=str) + "\n")
    return written


def _script(problem: Problem, framework: str, dtype: str, rtol: float, atol: float) -> Optional[str]:
    try:
        module = codegen.generate(problem.model, framework)
    except Exception:  # a spec the generator does not cover: the other files still reproduce it
        return None
    return script_for(framework, module, dtype, rtol, atol)


def _versions(label: str) -> Dict[str, str]:
    try:
        return backends.get(label).versions()
    except Exception:  # the report still stands without them
        return {}


def load(directory: str):
    """(problem, record) read back from a reproducer directory."""
    with open(os.path.join(directory, "verdict.json"), encoding="utf-8") as f:
        record = json.load(f)
    model = specfile.load(os.path.join(directory, "spec.json"))
    problem = Problem(model, int(record["batch"]), int(record["weight_seed"]), int(record["input_seed"]))
    return problem, record


def rerun(directory: str) -> Verdict:
    """The backend's verdict on the reproducer, run again through refnets from its files
    (the weights and input regenerated from the recorded seeds must equal the saved ones)."""
    problem, record = load(directory)
    dtype = record["dtype"]
    saved = W.load(os.path.join(directory, "weights.safetensors"))
    fresh = problem.weights(dtype)
    if sorted(saved) != sorted(fresh) or any(not np.array_equal(saved[k], fresh[k]) for k in saved):
        raise ValueError(f"{directory}: weights.safetensors is not what the recorded seed draws")
    if not np.array_equal(np.load(os.path.join(directory, "input.npy")), problem.input(dtype)):
        raise ValueError(f"{directory}: input.npy is not what the recorded seed draws")
    return evaluate(problem, record["backend"], dtype)
