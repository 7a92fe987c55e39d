"""What a framework tracer hands to the framework-neutral part of tracing: the
native model's real graph as a list of ops, each already mapped to one spec leaf
(or to a merge), with its canonical weights. `refnets.trace.decompose` turns it
into a series-parallel spec.

A tracer (`refnets/backends/<framework>/trace.py`, function `graph(model,
input_shape, dtype)`) must:
- list ops in an order where every op comes after its inputs;
- give each op a readable unique `id` (the native layer's path, say
  "layer1.0.conv1", or an op name and counter such as "add_3" for functional ops);
- map a layer with a fused activation to two ops (the layer, then its activation,
  id "<layer>.activation");
- give a merging op (`x + y`, `torch.cat`, `layers.Concatenate`, `nd.concat`) `node=None`
  and `merge="add"` or `"concat"` (channel concat; inputs in the concat's order);
- put every parameter in the canonical layout (conv OIHW, dense (out, in) with its
  inputs in C, H, W order, BatchNorm weight / bias / running_mean / running_var);
- give ops that apply the same native layer (one module reused for three branches)
  the same `owner`: the first keeps the weights, the later ones become `Shared`;
- raise `UntraceableError` for an op outside the vocabulary, naming the op, the layer
  that holds it and what the vocabulary offers: nothing half-traced is returned.

Imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import spec as S

INPUT = "<input>"

VOCABULARY = ("Conv2d (any stride, dilation, groups, padding per side or TensorFlow's 'same'), Dense, "
              "BatchNorm, relu / sigmoid / tanh / softmax, max and average pools, global and adaptive "
              "average pools, zero padding, flatten, dropout, identity, channel concat, element-wise add")


class UntraceableError(ValueError):
    """The native model holds an op the vocabulary cannot express (or a graph shape
    it cannot: two inputs, two outputs ...). The message names the op and the layer."""


def untraceable(op: str, layer: str, detail: str = "") -> UntraceableError:
    """The one message for an op outside the vocabulary."""
    extra = f" ({detail})" if detail else ""
    return UntraceableError(f"cannot trace op {op!r} in layer {layer!r}{extra}: the vocabulary has {VOCABULARY}")


@dataclass
class TracedOp:
    """One op of a native graph, mapped to the vocabulary."""

    id: str
    inputs: Tuple[str, ...]
    node: Optional[S.Node] = None  # the spec leaf (its name is set by decompose); None for a merge
    merge: Optional[str] = None  # "add" | "concat" for a merging op
    weights: Dict[str, np.ndarray] = field(default_factory=dict)  # canonical role -> array
    owner: str = ""  # the native layer that holds the weights ("" : the op's id)

    @property
    def layer(self) -> str:
        return self.owner or self.id


@dataclass
class TracedGraph:
    """A native model's graph: ops in execution order, the id of the output op, the
    input shape (C, H, W) it was traced at, and the framework it came from."""

    ops: List[TracedOp]
    output: str
    input_shape: Tuple[int, int, int]
    framework: str
    name: str = "traced"
