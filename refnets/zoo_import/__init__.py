"""The frameworks' own model zoos, imported into the canonical weight contract.

    from_keras(model, arch=None, **options) -> Weights        keras.applications
    from_gluon(block, arch=None, **options) -> Weights         mxnet.gluon.model_zoo.vision
    from_torchvision(state_dict_or_module, arch=None, **options)   torchvision.models

`arch` is one of our model names (`resnet50`), the zoo's own name (`resnet50_v1`,
`ResNet50V2`), or a `ModelSpec`; by default, the one the model's name (Keras) or
class and structure (Gluon, a torchvision module) tell. For our names the zoo's
layout options (`layout="gluon"`, ...) are filled in from `ZOOS`. The zoo model is read by its framework's reader (`refnets/backends/<framework>/read.py`,
the one that also reads users' ports) and aligned with the spec layer by layer
(Keras: by layer name; Gluon and torchvision: by structure, i.e. registration
order, never by Gluon's global name prefixes), and every kind, shape, stride,
BatchNorm eps and affine flag is checked before anything is read: a zoo model that
does not fit raises `ZooMismatchError` naming the first mismatch.

`ZOOS` says which zoo model reproduces which of our models with which options.
This module imports no framework; each zoo adapter imports its own.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple, Union

from .. import registry
from ..backends import catalog
from ..native import NativeLayer, Slot
from ..spec import ModelSpec
from ..weights import Weights
from .core import Binding, ZooMismatchError

Options = Tuple[Tuple[str, object], ...]


@dataclass(frozen=True)
class ZooEntry:
    model: str  # our registry name
    native: str  # the zoo's constructor
    layout: Options = ()  # spec options that reproduce the zoo's layout
    select: Options = ()  # options that select this variant among several (VGG's batch_norm)
    renames: Options = ()  # keras: our joined name -> the zoo's layer name


ZOO_LABELS = {name: record.label for name, record in catalog.ZOOS.items()}
# Options a zoo run may set besides the layout and the variant: the zoo builds its
# model with this many classes; dropout is inactive in inference.
FREE_OPTIONS = ("num_classes", "dropout")

_VGG = ("vgg11", "vgg13", "vgg16", "vgg19")
_RESNET_DEPTHS = (18, 34, 50, 101, 152)
_NO_BN = (("batch_norm", False),)
_WITH_BN = (("batch_norm", True),)
_KERAS_VGG_NAMES = (("fc3", "predictions"),)

ZOOS: Dict[str, List[ZooEntry]] = {
    "keras": [
        ZooEntry("resnet50v2", "ResNet50V2"),
        ZooEntry("resnet101v2", "ResNet101V2"),
        ZooEntry("resnet152v2", "ResNet152V2"),
        ZooEntry("vgg16", "VGG16", select=_NO_BN, renames=_KERAS_VGG_NAMES),
        ZooEntry("vgg19", "VGG19", select=_NO_BN, renames=_KERAS_VGG_NAMES),
        ZooEntry("densenet121", "DenseNet121", layout=(("layout", "keras"),)),
    ],
    "gluon": (
        [ZooEntry(f"resnet{d}", f"resnet{d}_v1", layout=(("layout", "gluon"),)) for d in _RESNET_DEPTHS]
        + [ZooEntry(f"resnet{d}v2", f"resnet{d}_v2", layout=(("layout", "gluon"),)) for d in _RESNET_DEPTHS]
        + [ZooEntry(v, v, select=_NO_BN) for v in _VGG]
        + [ZooEntry(v, f"{v}_bn", select=_WITH_BN) for v in _VGG]
        + [ZooEntry("alexnet", "alexnet"), ZooEntry("densenet121", "densenet121", layout=(("layout", "torchvision"),))]
    ),
    "torchvision": (
        [ZooEntry("alexnet", "alexnet")]
        + [ZooEntry(v, v, select=_NO_BN) for v in _VGG]
        + [ZooEntry(v, f"{v}_bn", select=_WITH_BN) for v in _VGG]
        + [ZooEntry(f"resnet{d}", f"resnet{d}", layout=(("layout", "torchvision"),)) for d in _RESNET_DEPTHS]
        + [ZooEntry("googlenet", "googlenet", layout=(("layout", "torchvision"),)),
           ZooEntry("densenet121", "densenet121", layout=(("layout", "torchvision"),))]
    ),
}


class UnknownZooError(ValueError):
    pass


def check_zoo(zoo: str) -> str:
    if zoo not in ZOOS:
        raise UnknownZooError(f"unknown zoo {zoo!r}; choose from {', '.join(ZOOS)}")
    return zoo


def supported(zoo: str) -> List[str]:
    """'our name (zoo name)' for every model the zoo reproduces."""
    return [f"{e.model}{''.join(f' {k}={v}' for k, v in e.select)} ({e.native})" for e in ZOOS[check_zoo(zoo)]]


def resolve(zoo: str, model: str, options: Optional[Mapping[str, object]] = None) -> Tuple[ZooEntry, Dict[str, object]]:
    """The zoo entry for `model` (our name or the zoo's, any case) and the spec
    options that reproduce it: `options` plus the entry's layout. Raises
    UnknownModelError (the zoo has no such model) or BadOptionError (an option the
    zoo model cannot reproduce, or a layout other than the zoo's)."""
    options = dict(options or {})
    entries = ZOOS[check_zoo(zoo)]
    by_native = [e for e in entries if e.native.lower() == model.lower()
                 and all(options.get(k, v) == v for k, v in e.select)]  # vgg16 is also our name
    if by_native:
        entry = by_native[0]
    elif any(e.model == model for e in entries):  # our name: `options` (or defaults) select the variant
        entry = _entry_for(zoo, model, options)
        if entry is None:
            raise registry.BadOptionError(
                f"the {ZOO_LABELS[zoo]} zoo has no {model} with options {options}; it reproduces: "
                f"{', '.join(supported(zoo))}")
    else:
        raise registry.UnknownModelError(
            f"the {ZOO_LABELS[zoo]} zoo has no model {model!r}; it reproduces: {', '.join(supported(zoo))}")
    fixed = dict(entry.layout + entry.select)
    for key, value in options.items():
        if key in fixed and fixed[key] != value:
            raise registry.BadOptionError(
                f"{ZOO_LABELS[zoo]} {entry.native} is {entry.model} with {key}={fixed[key]!r}, not {key}={value!r}")
        if key not in fixed and key not in FREE_OPTIONS:
            raise registry.BadOptionError(
                f"option {key}={value!r} cannot be reproduced by {ZOO_LABELS[zoo]} {entry.native}; "
                f"a zoo run takes only {', '.join(FREE_OPTIONS)} (and the zoo's own layout options)")
    return entry, {**options, **fixed}


def _entry_for(zoo: str, model: str, options: Mapping[str, object]) -> Optional[ZooEntry]:
    """The zoo entry of our model `model` whose variant `options` select, if any."""
    effective = {**registry.options_of(model), **options}
    return next((e for e in ZOOS[zoo] if e.model == model and all(effective.get(k) == v for k, v in e.select)),
                None)


def spec_for(zoo: str, arch: Union[str, ModelSpec], input_shape=None, **options) -> Tuple[ModelSpec, Optional[ZooEntry]]:
    """The spec a zoo model is imported into, and its zoo entry when there is one.
    For one of our names, the zoo's layout fills in the options `options` leave
    open, and options given explicitly win (a mismatch is then reported by the
    alignment); a zoo name takes the zoo's layout (see `resolve`)."""
    check_zoo(zoo)
    if isinstance(arch, ModelSpec):
        known = arch.name in registry.list_models()
        entry = _entry_for(zoo, arch.name, dict(arch.options)) if known else None
        return (arch.with_input_shape(input_shape) if input_shape else arch), entry
    if arch in registry.list_models():
        entry = _entry_for(zoo, arch, options)
        merged = {**dict(entry.layout), **options} if entry else dict(options)
        return registry.get_spec(arch, input_shape=input_shape, **merged), entry
    entry, spec_options = resolve(zoo, arch, options)
    return registry.get_spec(entry.model, input_shape=input_shape, **spec_options), entry


def adapter(zoo: str):
    """The zoo's adapter (`zoo.py` in the package of the backend the catalog names),
    importing its framework now (BackendUnavailableError if missing)."""
    from ..backends import BackendUnavailableError

    record = catalog.ZOOS[check_zoo(zoo)]
    package = catalog.BACKENDS[record.backend].package
    try:
        if importlib.util.find_spec(record.framework) is None:
            raise ImportError(f"no module named {record.framework!r}")
        return importlib.import_module(f"{package}.zoo")
    except ImportError as err:
        raise BackendUnavailableError(
            f"the {record.label} zoo needs {record.framework}, which could not be imported ({err}). "
            f"Install it with: {record.install}") from err


def bind(zoo: str, native, arch: Union[str, ModelSpec, None] = None, input_shape=None, **options) -> Binding:
    """The zoo model `native` aligned with the spec of `arch` (ZooMismatchError at
    the first mismatch): canonical name -> the zoo's variable, readable and writable."""
    return adapter(zoo).bind(native, arch, input_shape=input_shape, **options)


def from_keras(model, arch: Union[str, ModelSpec, None] = None, **options) -> Weights:
    """Canonical weights of a keras.applications model (ResNet50V2/101V2/152V2,
    VGG16/19, DenseNet121). `arch` defaults to the model's own name; the spec's
    input shape is the model's."""
    return bind("keras", model, arch, **options).read()


def from_gluon(block, arch: Union[str, ModelSpec, None] = None, input_shape=None, **options) -> Weights:
    """Canonical weights of an initialised Gluon model-zoo block (resnet*_v1/_v2,
    vgg*, vgg*_bn, alexnet, densenet121). `arch` defaults to the one the block's
    class and structure tell."""
    return bind("gluon", block, arch, input_shape=input_shape, **options).read()


def from_torchvision(state_dict_or_module, arch: Union[str, ModelSpec, None] = None, input_shape=None,
                     **options) -> Weights:
    """Canonical weights of a torchvision model (alexnet, vgg*, vgg*_bn, resnet18-152,
    googlenet, densenet121) or of its state_dict (torch tensors or numpy arrays;
    torchvision itself is then not needed, but `arch` must be named). GoogLeNet's
    auxiliary heads, unused in inference, are ignored; its `transform_input` must
    be off."""
    if isinstance(state_dict_or_module, Mapping):  # no torch, no torchvision needed
        from . import state_dict

        return state_dict.bind(state_dict_or_module, arch, input_shape=input_shape, **options).read()
    return bind("torchvision", state_dict_or_module, arch, input_shape=input_shape, **options).read()


__all__ = ["Binding", "NativeLayer", "Slot", "UnknownZooError", "ZOOS", "ZOO_LABELS", "ZooEntry", "ZooMismatchError",
           "adapter", "bind", "from_gluon", "from_keras", "from_torchvision", "resolve", "spec_for", "supported"]
