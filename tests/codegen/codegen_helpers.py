"""Shared by the code generation tests: write a generated module, import it, run
it on seeded canonical weights."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np

import refnets
from refnets import registry
from refnets import spec as S
from refnets import weights as W
from refnets.codegen import generate

from contract.test_node_types import CASES

SMALL = registry.SMALL_INPUTS  # small inputs where the architecture allows
PYPROJECT = str(pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml")  # [tool.ruff]: generated code's style
# Every node type of the vocabulary, and a BatchNorm with the biased running-variance rule.
BIASED_BN = S.ModelSpec(name="bn_biased", input_shape=(4, 5, 5), root=S.Sequential(children=(
    S.BatchNorm(name="bn", unbiased_running_var=False, eps=1e-3), S.Activation(name="act", kind="tanh"))))
VOCABULARY = {**CASES, "BatchNorm-biased": BIASED_BN}


def small_spec(name: str, **options):
    return refnets.get_spec(name, input_shape=SMALL.get(name), **options)


def write_module(spec, framework: str, folder, stem: str = None):
    """Generate `spec` for `framework` into folder/<stem>.py and import it."""
    stem = stem or f"gen_{framework}_{spec.name}"
    path = os.path.join(str(folder), f"{stem}.py")
    with open(path, "w") as handle:
        handle.write(generate(spec, framework))
    module_spec = importlib.util.spec_from_file_location(stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, path


def seeded_weights(spec, folder, dtype: str = "float32"):
    """Seeded canonical weights (random BatchNorm statistics), also saved as safetensors."""
    weights = W.init(spec, seed=3, dtype=dtype)
    path = os.path.join(str(folder), f"{spec.name}_{dtype}.safetensors")
    W.save(path, weights)
    return weights, path


def ruff() -> str:
    """The ruff executable: next to this interpreter, else on PATH ("" if neither)."""
    beside = os.path.join(os.path.dirname(sys.executable), "ruff")
    return beside if os.path.exists(beside) else (shutil.which("ruff") or "")


def ruff_problems(path: str, config: str) -> str:
    """ruff format --check and ruff check of one file, with the project's settings
    for generated code; their complaints ("" when clean)."""
    exe = ruff()
    out = []
    for args in (["format", "--check", "--diff"], ["check", "--no-cache"]):
        done = subprocess.run([exe, *args, "--config", config, path], capture_output=True, text=True)
        if done.returncode:
            out.append(done.stdout + done.stderr)
    return "\n".join(out)


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
