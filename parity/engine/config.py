"""Run set-up shared by every mode: argument checks, the model, the backends, the
weights, the seeded input and the tolerance. Every name here is public; the
refnets backends registry is reached from here (and from `port.load` for readers)."""

from __future__ import annotations

import math
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import refnets
from refnets import backends as B
from refnets import models, registry
from refnets import spec as S
from refnets.specfile import SpecFileError
from refnets import weights as W
from refnets.native import PortModelError
from refnets.trace.graph import UntraceableError
from refnets.userload import UserCodeError
from refnets.zoo_import import UnknownZooError
from refnets import workers
from refnets.workers import BackendFailure, WorkerConfigError

DTYPES = ("float32", "float64")


class ParityUsageError(Exception):
    """Bad arguments or environment (exit code 2): the message says what to do."""


USAGE_ERRORS = (registry.UnknownModelError, registry.BadOptionError, B.UnknownBackendError,
                B.BackendUnavailableError, refnets.InputTooSmallError, W.WeightFileError,
                W.WeightMismatchError, ParityUsageError, UnknownZooError,
                PortModelError, B.CapabilityError, UserCodeError, UntraceableError, SpecFileError,
                WorkerConfigError, BackendFailure)  # a worker that died outside an inference run: exit 2


def configure_pythons(pairs) -> None:
    """--python NAME=PATH pairs (repeatable) as the interpreters of the backends' workers."""
    pythons = dict(pairs)
    if len(pythons) != len(pairs):
        raise ParityUsageError("--python names the same backend twice")
    workers.configure(pythons)


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ParityUsageError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def check_batch(batch, strict_int: bool = False) -> int:
    """A positive batch size (`strict_int`: also refuse a non-int, as the training runs do)."""
    if strict_int and (not isinstance(batch, int) or batch < 1):
        raise ParityUsageError(f"batch must be a positive integer, got {batch!r}")
    if batch < 1:
        raise ParityUsageError(f"batch must be at least 1, got {batch}")
    return batch


def resolve_model(model: Union[str, S.ModelSpec], input_shape, options) -> S.ModelSpec:
    """A zoo name, a spec file (.json) or a ModelSpec (see `refnets.models.resolve`)."""
    return models.resolve(model, input_shape, options)


def check_backends(names: Sequence[str]) -> List[str]:
    """Known names or `name:device` labels (`torch:cpu` is `torch`), none twice."""
    chosen = [B.canonical_label(name) for name in names]
    if len(set(chosen)) != len(chosen):
        raise ParityUsageError(f"backend listed twice in {','.join(chosen)}")
    return chosen


def resolve_backends(names: Optional[Sequence[str]], reference: Optional[str]) -> List[str]:
    """The chosen backends (default: every installed framework), the reference first; at least two."""
    chosen = check_backends(names if names else B.installed())
    if reference is not None:
        reference = B.canonical_label(reference)
        chosen = [reference] + [b for b in chosen if b != reference]
    if len(chosen) < 2:
        found = ", ".join(B.installed()) or "none"
        raise ParityUsageError(f"parity needs at least two backends, got {chosen or 'none'} "
                               f"(installed: {found}); install more with: pip install 'refnets[all]'")
    return chosen


def installed_backends() -> List[str]:
    return B.installed()


def place_backends(names: Optional[Sequence[str]], device: str, tf32: bool) -> Optional[List[str]]:
    """The backend labels of a run on `device` (parity --device): each chosen backend
    (default: every installed one) that can run there moves there, the others stay on
    the CPU. A device no chosen backend runs on, or TF32 with no GPU backend, is a
    usage error rather than a run that silently stays on the CPU."""
    labels = list(names) if names else None
    if device != "cpu":
        labels = labels or installed_backends()
        placed = [B.on_device(B.canonical_label(label), device) for label in labels]
        if all(B.parse_label(label)[1] == "cpu" for label in placed):
            able = [n for n, r in B.catalog.BACKENDS.items() if device.split(":")[0] in r.devices]
            raise ParityUsageError(f"--device {device}: none of {', '.join(labels)} runs there "
                                   f"(backends that can: {', '.join(able) or 'none'})")
        labels = placed
    if tf32 and not any(B.parse_label(label)[1] != "cpu" for label in labels or ()):
        raise ParityUsageError("--tf32 allows TF32 on a GPU: add --device cuda (or a label such as torch:cuda)")
    return labels


def canonical_weights(model: S.ModelSpec, weights, seed: int, dtype: str) -> W.Weights:
    """`weights` (a mapping or a .safetensors/.npz path) checked against the model
    and cast to `dtype`; None: seeded framework-neutral weights."""
    if weights is None:
        return W.init(model, seed=seed, dtype=dtype)
    loaded = W.load(weights) if isinstance(weights, str) else dict(weights)
    W.check(refnets.param_shapes(model), loaded)
    return W.cast(loaded, dtype)


def seeded_weights_in_background(model: S.ModelSpec, seed: int, dtype: str) -> Callable[[], W.Weights]:
    """Starts drawing the seeded weights in a thread; returns the function that
    waits for them. numpy's generator and casts release the GIL, so they are
    drawn on another core while the frameworks import (ResNet50V2: 25.6 M values)."""
    found: Dict[str, object] = {}

    def draw() -> None:
        try:
            found["weights"] = canonical_weights(model, None, seed, dtype)
        except BaseException as err:  # noqa: BLE001 (raised where they are waited for)
            found["error"] = err

    thread = threading.Thread(target=draw, name="parity-seeded-weights", daemon=True)
    thread.start()

    def wait() -> W.Weights:
        thread.join()
        if "error" in found:
            raise found.pop("error")
        return found.pop("weights")
    return wait


def seeded_input(seed: int, batch: int, input_shape, dtype: str) -> np.ndarray:
    """The inference runs' input: standard normal, channels-first, seeded by seed + 1."""
    return np.random.default_rng(seed + 1).standard_normal((batch,) + tuple(input_shape)).astype(dtype)


def resolve_tolerance(defaults: Tuple[float, float], rtol: Optional[float], atol: Optional[float]):
    """(rtol, atol): the given ones, else the defaults. A negative, NaN or infinite
    tolerance is a usage error (it would turn every comparison into a disagreement,
    or none)."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ParityUsageError(f"{name} must be a finite number >= 0, got {value!r}")
    return (defaults[0] if rtol is None else rtol, defaults[1] if atol is None else atol)
