"""The canonical weight contract: a flat mapping name -> numpy array.

Layouts: conv kernels OIHW; dense (out, in) with `in` in C, H, W flatten order;
BatchNorm `weight, bias, running_mean, running_var`. Files are safetensors or
`.npz` (loaded without pickle). Every setter checks all names and shapes before
assigning anything (`check`).
"""

from __future__ import annotations

import io
import math
import os
from typing import Dict, Mapping

import numpy as np

from . import shapes
from .fileio import write_atomic
from .spec import ModelSpec

Weights = Dict[str, np.ndarray]


class WeightMismatchError(ValueError):
    """Weights do not fit a model: lists every missing, unexpected and mis-shaped name."""


class WeightFileError(ValueError):
    """A weight file cannot be read."""


def check(expected: Mapping[str, tuple], weights: Mapping[str, np.ndarray]) -> None:
    """Raise WeightMismatchError naming every missing, unexpected or mis-shaped key."""
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    misshaped = sorted(
        f"{k}: expected {tuple(expected[k])}, got {tuple(np.shape(weights[k]))}"
        for k in set(expected) & set(weights) if tuple(np.shape(weights[k])) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"missing ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected ({len(unexpected)}): {', '.join(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape ({len(misshaped)}): {'; '.join(misshaped)}")
    if problems:
        raise WeightMismatchError("weights do not fit the model; nothing was set. " + " | ".join(problems))


def init(model: ModelSpec, seed: int = 0, dtype="float32", input_shape=None) -> Weights:
    """Seeded framework-neutral weights: He-normal kernels, small random biases,
    and BatchNorm affine parameters and running statistics drawn at random, so that
    a backend that mishandles any of them shows it."""
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for name, shape in shapes.param_shapes(model, input_shape).items():
        out[name] = _draw(rng, name, shape).astype(dtype)
    return out


def _draw(rng: np.random.Generator, name: str, shape: tuple) -> np.ndarray:
    param = name.rsplit(".", 1)[-1]
    if param == "weight" and len(shape) > 1:
        fan_in = math.prod(shape[1:])
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    if param == "running_var":
        return rng.uniform(0.5, 2.0, shape)
    if param == "weight":  # BatchNorm scale
        return rng.uniform(0.5, 1.5, shape)
    return rng.normal(0.0, 0.1, shape)  # biases, BatchNorm shift and running mean


def randomize_batchnorm(weights: Mapping[str, np.ndarray], seed: int = 0) -> Weights:
    """A copy of `weights` with every BatchNorm's scale, shift and running
    statistics redrawn (seeded), so default statistics (0 mean, 1 variance)
    cannot hide a BatchNorm bug. A BatchNorm is recognised by its running_mean;
    an affine-free one (no weight, bias) gets new statistics only."""
    rng = np.random.default_rng(seed)
    out = dict(weights)
    prefixes = [k[: -len(".running_mean")] for k in sorted(weights) if k.endswith(".running_mean")]
    for prefix in prefixes:
        for param in shapes.BN_PARAMS:
            key = f"{prefix}.{param}"
            if key not in weights:  # an affine-free BatchNorm
                continue
            out[key] = _draw(rng, key, weights[key].shape).astype(weights[key].dtype)
    return out


def cast(weights: Mapping[str, np.ndarray], dtype) -> Weights:
    return {k: np.asarray(v, dtype=dtype) for k, v in weights.items()}


# ----------------------------------------------------------------------------- files


def save(path: str, weights: Mapping[str, np.ndarray]) -> None:
    """Save to `.safetensors` or `.npz` (chosen by the extension)."""
    arrays = {k: np.ascontiguousarray(v) for k, v in weights.items()}
    if path.endswith(".safetensors"):
        from safetensors.numpy import save

        data = save(arrays)
    elif path.endswith(".npz"):
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
    else:
        raise WeightFileError(f"{path!r}: weight files must end in .safetensors or .npz")
    write_atomic(path, data)  # never a half-written file (Ctrl-C, a full disk)


def load(path: str) -> Weights:
    """Load a `.safetensors` or `.npz` file (never pickle)."""
    if os.path.isdir(path):
        raise WeightFileError(f"{path!r} is a directory, not a weight file (.safetensors or .npz)")
    if not os.path.isfile(path):
        raise WeightFileError(f"{path!r}: no such weight file")
    try:
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file

            return dict(load_file(path))
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
    except Exception as err:  # a corrupt file: say which and why
        raise WeightFileError(f"{path!r} is not a readable weight file: {err}") from err
    raise WeightFileError(f"{path!r}: weight files must end in .safetensors or .npz")
