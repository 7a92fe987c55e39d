"""`parity.run_against`: does our model, in every chosen backend, compute what the
framework's own model-zoo model computes?

The zoo model is built with its own (seeded) random initialisation; its BatchNorm
statistics and affine parameters are then redrawn at random in the zoo model
itself (so default statistics cannot hide a BatchNorm bug); its weights are
imported into the canonical contract (`refnets.zoo_import`), which every chosen
backend receives. The same seeded input runs through all of them, and each
backend is compared with the zoo model, the reference, with the usual tolerance
rules. Localisation compares the outputs of the zoo's parameterised layers (or
of the activation a zoo layer fuses in) with the matching spec nodes.
"""

from __future__ import annotations

import gc
from typing import Dict, Optional, Sequence

import numpy as np
import refnets
from refnets import registry
from refnets import weights as W
from refnets import zoo_import as Z

from .engine.config import (ParityUsageError, check_backends, check_batch, check_dtype, installed_backends,
                            resolve_tolerance, seeded_input)
from .engine.header import Progress, progress_or_quiet
from .engine.localise import localise
from .engine.session import (ParityResult, build_and_load, compare_all, forward_all, import_backends, isolated,
                             timed)
from .engine.tolerances import tolerance


def _resolve_backends(names: Optional[Sequence[str]]):
    chosen = check_backends(names if names else installed_backends())
    if not chosen:
        raise ParityUsageError("a zoo run needs at least one backend; install one with: pip install 'refnets[all]'")
    return chosen


def _batchnorm_keys(weights: Dict[str, np.ndarray]):
    prefixes = {k[: -len(".running_mean")] for k in weights if k.endswith(".running_mean")}
    return [k for k in weights if k.rpartition(".")[0] in prefixes]


def run_against(model: str, zoo: str, backends: Optional[Sequence[str]] = None, batch: int = 2, input_shape=None,
                dtype: str = "float32", seed: int = 0, rtol: Optional[float] = None, atol: Optional[float] = None,
                save_weights: Optional[str] = None, layers: bool = False, options: Optional[dict] = None,
                progress: Optional[Progress] = None, tf32: bool = False) -> ParityResult:
    """Compare `model` (our name or the zoo's) in every chosen backend (default:
    every installed one) with the `zoo` model ("keras", "gluon", "torchvision").
    Raises one of USAGE_ERRORS for bad arguments, a missing framework or a zoo
    model that does not fit the spec."""
    say = progress_or_quiet(progress)
    check_dtype(dtype)
    check_batch(batch)
    if not isinstance(model, str):
        raise ParityUsageError("a zoo run takes a model name")
    entry, spec_options = Z.resolve(Z.check_zoo(zoo), model, options)
    spec = registry.get_spec(entry.model, input_shape=input_shape, **spec_options)
    refnets.infer(spec)  # input too small: fail before importing anything
    chosen = _resolve_backends(backends)
    label = Z.ZOO_LABELS[zoo]
    rtol, atol = resolve_tolerance(tolerance(spec.name, dtype), rtol, atol)
    result = ParityResult(model=spec.name, backends=[label] + chosen, reference=label, dtype=dtype,
                          input_shape=tuple(spec.input_shape), batch=batch, seed=seed, rtol=rtol, atol=atol,
                          options={k: v for k, v in spec.options if k in spec_options}, against=zoo,
                          zoo_model=entry.native, tf32=tf32)
    num_classes = dict(spec.options).get("num_classes", 1000)

    say(f"importing the {label} zoo")
    with timed(result, "import", label):
        zoo_impl = Z.adapter(zoo)
    result.versions.update(zoo_impl.versions())
    zoo_model = _ZooModel(zoo_impl, entry, spec, num_classes, dtype, seed)
    say(f"building {label} {entry.native}")
    with timed(result, "build", label):
        native = zoo_model.build()
    result.param_counts[label] = zoo_impl.count_params(native)
    say("randomising its BatchNorm and importing its weights")
    with timed(result, "weights", label):
        binding, canonical = zoo_model.load(native)  # ZooMismatchError names the first mismatch
    if save_weights:
        W.save(save_weights, canonical)
    x = seeded_input(seed, batch, spec.input_shape, dtype)
    say(f"forward in {label}")
    with timed(result, "forward", label):
        outputs = {label: zoo_impl.forward(native, x)}
    if not layers:  # the zoo model is rebuilt if a disagreement needs it: one VGG fewer in memory
        del native, binding
        gc.collect()

    impls = import_backends(result, chosen, say)
    nets = build_and_load(result, spec, impls, canonical, say)
    del canonical
    outputs.update(forward_all(result, impls, nets, x, say))
    compare_all(result, outputs)
    if layers or not result.agreed:
        if not layers:
            say(f"rebuilding {label} {entry.native} to localise")
            native = zoo_model.build()
            binding, _ = zoo_model.load(native)
            if not np.array_equal(zoo_impl.forward(native, x), outputs[label]):
                raise RuntimeError(f"the rebuilt {label} {entry.native} computes another output; "
                                   f"rerun with --layers to localise")
        localise_against_zoo(result, spec, binding, zoo_impl, native, impls, nets, x, say)
    return result


class _ZooModel:
    """Builds the zoo model (seeded) and redraws its BatchNorm (seeded): the same
    model every time, so it can be dropped and rebuilt."""

    def __init__(self, zoo_impl, entry, spec, num_classes, dtype, seed):
        self.impl, self.entry, self.spec = zoo_impl, entry, spec
        self.num_classes, self.dtype, self.seed = num_classes, dtype, seed

    def build(self):
        return self.impl.build(self.entry, num_classes=self.num_classes, input_shape=self.spec.input_shape,
                               dtype=self.dtype, seed=self.seed)

    def load(self, native):
        """(binding, canonical weights) after the BatchNorm parameters and
        statistics were redrawn in the zoo model itself."""
        binding = self.impl.bind(native, self.spec)
        imported = binding.read()
        redrawn = W.randomize_batchnorm(imported, seed=self.seed)
        binding.write({k: redrawn[k] for k in _batchnorm_keys(redrawn)})
        del imported, redrawn  # a VGG's weights are 0.5-1 GB a copy
        return binding, binding.read()


def localise_against_zoo(result, spec, binding, zoo_impl, native, impls, nets, x, say) -> None:
    points = binding.capture_points()
    paths = list(points)
    label = result.reference
    say(f"capturing {len(paths)} layer outputs in {label}")
    with timed(result, "localise", label):
        ref_acts = zoo_impl.capture(native, points, x)
    for name in [b for b in result.running(result.backends[1:]) if b in result.results]:
        say(f"capturing {len(paths)} node outputs in {name}")
        with isolated(result, name, say), timed(result, "localise", name):
            _, acts = impls[name].forward(nets[name], x, capture=paths)
            result.results[name].localisation = localise(spec, ref_acts, acts, result.rtol, result.atol, paths)


__all__ = ["run_against"]
