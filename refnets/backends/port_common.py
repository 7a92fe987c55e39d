"""What a backend's port adapter (`<framework>_port.py`) tells the framework-neutral
port checker about a user's own native model. Imports no framework.

An adapter module has the same functions in every framework:

    is_model(obj) -> bool                     a native model of this framework?
    loading(dtype) -> context manager         the user's factory runs inside it
    prepare(model, dtype) -> model            inference mode, the run's dtype
    layers(model, x) -> [UserLayer]           parameterised layers in execution order
    unused(model, called) -> [name]           layers with parameters never called
    set_params(model, {layer: {role: array}}) canonical layouts in, all-or-nothing
    forward(model, x, capture=()) -> (output, {layer: (input, output)})   channels-first
    versions() -> {package: version}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

KINDS = ("conv", "dense", "batchnorm")


class PortModelError(ValueError):
    """The user's model cannot be examined (it does not run, returns something that
    is not one array, calls a parameterised layer twice ...): the message says why."""


@dataclass(frozen=True)
class UserLayer:
    """One parameterised layer of the user's model.

    kind: "conv", "dense", "batchnorm", or "other" (parameters we cannot map).
    params: canonical role (weight, bias, running_mean, running_var) -> shape in the
    canonical layout (conv OIHW, dense (out, in)).
    config: what the diagnosis may use: conv `stride`, `padding` (top, bottom, left,
    right), `dilation`, `groups`; batchnorm `eps`; `activation` for a conv or dense
    with a fused activation (relu, sigmoid, tanh), whose captured output follows it."""

    name: str
    kind: str
    type_name: str
    params: Dict[str, Tuple[int, ...]]
    config: Dict[str, object] = field(default_factory=dict)
