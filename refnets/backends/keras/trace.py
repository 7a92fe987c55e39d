"""The Keras 3 tracer: a native Keras model -> `refnets.trace.TracedGraph`.

It walks the model's real layer graph, at the requested input shape:
- a functional model (`keras.Model(inputs, outputs)`) node by node, in depth order;
- a Sequential model through the functional graph Keras keeps inside it (built at
  the input shape when it has none);
- a functional or Sequential model used as a layer by recursion, ids "outer/inner";
- a subclassed `keras.layers.Layer` (or `keras.Model`) block by calling its `call`
  on a symbolic `keras.Input`: the layers it calls and the keras.ops it applies
  (`x + y` is an `Add` operation) are recorded as a fresh functional graph over the
  same layer objects and variables, which is walked in turn. Inner ids use the
  block's attribute names ("res/conv1"). The nodes this adds to the inner layers
  are removed afterwards, so the user's model is left as it was.

Every value's symbolic shape is recomputed at the requested input shape
(`compute_output_spec`), so a model built for other or unknown sizes traces too.
A layer object applied several times gets the same `owner` on every op (the path of
its first use). Layers map to spec leaves in `trace_layers`; anything else raises
`UntraceableError` naming the Keras class and the layer.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Dict, List, Sequence, Tuple

from ...trace.graph import INPUT, TracedGraph, TracedOp, UntraceableError, untraceable
from .framework import keras
from .trace_layers import KEEP, Step, Value, convert_operation, layer_converter

FRAMEWORK = "keras"


def graph(model, input_shape, dtype: str = "float32") -> TracedGraph:
    """The traced graph of a Keras model at `input_shape` (C, H, W); the model runs
    channels-last, (N, H, W, C). Weights come back canonical, as `dtype` arrays."""
    c, h, w = (int(v) for v in input_shape)
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"the keras tracer reads a keras.Model or keras.layers.Layer, got {type(model).__name__}")
    tracer = _Tracer(dtype)
    source = Value(INPUT, keras.KerasTensor((None, h, w, c), dtype=_input_dtype(model)))
    outputs = tracer.call(model, [source], prefix="", name=model.name, top=True)
    if len(outputs) != 1:
        raise UntraceableError(f"the model has {len(outputs)} outputs; a traced model has one")
    if outputs[0].ref == INPUT:
        raise UntraceableError("the model computes nothing from its input")
    return TracedGraph(ops=tracer.ops, output=outputs[0].ref, input_shape=(c, h, w), framework=FRAMEWORK,
                       name=model.name)


def _input_dtype(model) -> str:
    return str(getattr(model, "compute_dtype", None) or keras.config.floatx())


def _is_functional(layer) -> bool:
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth") \
        and not isinstance(layer, keras.Sequential)


class _Tracer:
    def __init__(self, dtype: str):
        self.dtype = dtype
        self.ops: List[TracedOp] = []
        self.ids: set = set()
        self.owners: Dict[int, str] = {}  # id(layer) -> path of its first use
        self.alive: List[object] = []  # the layers behind `owners`, so their ids stay theirs

    # ------------------------------------------------------------------ graph walking

    def call(self, layer, inputs: List[Value], prefix: str, name: str, top: bool = False) -> List[Value]:
        """The values `layer` computes from `inputs`, recording its ops. `prefix`: the
        id prefix of the layers inside it ("" at the top)."""
        if isinstance(layer, keras.Sequential):
            return self.walk(self.sequential_graph(layer, inputs), inputs, prefix, {})
        if _is_functional(layer):
            return self.walk(layer, inputs, prefix, {})
        converter = layer_converter(layer) if isinstance(layer, keras.layers.Layer) else None
        if converter is not None or not _is_block(layer):
            if top:
                raise untraceable(type(layer).__name__, name, "a single layer is not a model")
            return [self.leaf(layer, inputs, prefix, name)]
        return self.block(layer, inputs, prefix)

    def walk(self, functional, inputs: List[Value], prefix: str, names: Dict[int, str]) -> List[Value]:
        """Run through a functional graph; `names` gives readable names (a block's
        attribute names) to its layers by object id."""
        if len(functional.inputs) != len(inputs):
            raise UntraceableError(f"{functional.name!r} takes {len(functional.inputs)} inputs, it is given "
                                   f"{len(inputs)}")
        values = {id(x): v for x, v in zip(functional.inputs, inputs)}
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                if node.operation is None or node.is_input:
                    continue
                reads = [values[id(x)] for x in node.input_tensors]
                operation = node.operation
                own = names.get(id(operation), operation.name)
                outputs = self.node(node, reads, prefix, own)
                if len(outputs) != len(node.outputs):
                    raise untraceable(type(operation).__name__, prefix + own,
                                      f"{len(node.outputs)} outputs where {len(outputs)} were traced")
                values.update({id(x): v for x, v in zip(node.outputs, outputs)})
        return [values[id(x)] for x in functional.outputs]

    def node(self, node, reads: List[Value], prefix: str, name: str) -> List[Value]:
        operation = node.operation
        if isinstance(operation, keras.layers.Layer) and (
                _is_functional(operation) or isinstance(operation, keras.Sequential)
                or (layer_converter(operation) is None and _is_block(operation))):
            return self.call(operation, reads, self.unique(prefix + name) + "/", prefix + name)
        specs = {id(x): v.spec for x, v in zip(node.input_tensors, reads)}
        args, kwargs = node.arguments.fill_in(specs)
        try:
            out = operation.compute_output_spec(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 (any failure of Keras's own shape rule)
            raise untraceable(type(operation).__name__, prefix + name,
                              f"Keras cannot compute its output at this input size: {error}") from error
        value = self.leaf(operation, reads, prefix, name)
        value.spec = out
        return [value]

    def sequential_graph(self, model, inputs: List[Value]):
        if model._functional is None:
            model.build(inputs[0].spec.shape)
        if model._functional is None:
            raise UntraceableError(f"the Sequential model {model.name!r} has no graph after building it")
        return model._functional

    # ------------------------------------------------------------------ blocks

    def block(self, layer, inputs: List[Value], prefix: str) -> List[Value]:
        """A subclassed layer: its `call` on symbolic inputs, recorded as a functional graph."""
        symbolic = [keras.Input(batch_shape=tuple(v.spec.shape), dtype=v.spec.dtype) for v in inputs]
        kwargs = {"training": False} if "training" in inspect.signature(layer.call).parameters else {}
        with _restoring_nodes(layer):
            try:
                out = layer.call(*symbolic, **kwargs)
                recorded = keras.Model(symbolic if len(symbolic) > 1 else symbolic[0], out)
            except UntraceableError:
                raise
            except Exception as error:  # noqa: BLE001 (a call Keras cannot run symbolically)
                raise untraceable(type(layer).__name__, prefix.rstrip("/") or layer.name,
                                  f"its call cannot run on a symbolic keras.Input: {error}") from error
            return self.walk(recorded, inputs, prefix, _attribute_names(layer))

    # ------------------------------------------------------------------ leaves

    def leaf(self, operation, reads: List[Value], prefix: str, name: str) -> Value:
        """A mapped layer or keras.ops operation: its ops appended, the value it computes."""
        path = prefix + name
        if isinstance(operation, keras.layers.Layer):
            converter = layer_converter(operation)
            if converter is None:
                raise untraceable(type(operation).__name__, path)
            step: Step = converter(operation, reads, path, self.dtype)
            owner = self.owner(operation, path)
        else:
            step = convert_operation(operation, reads, path)
            owner = ""
        if not step.pieces:
            return Value(reads[0].ref, reads[0].spec, reads[0].perm)
        op_id = self.unique(path)
        sources: Tuple[str, ...] = tuple(v.ref for v in reads)
        for piece in step.pieces:
            piece_id = op_id + piece.suffix
            piece_owner = owner + piece.suffix if owner and piece.weights else ""
            self.ops.append(TracedOp(piece_id, sources, node=piece.node, merge=piece.merge,
                                     weights=piece.weights, owner=piece_owner))
            self.ids.add(piece_id)
            sources = (piece_id,)
        perm = reads[0].perm if step.perm is KEEP else step.perm
        return Value(sources[0], reads[0].spec, perm)

    def owner(self, layer, path: str) -> str:
        if id(layer) not in self.owners:
            self.owners[id(layer)] = path
            self.alive.append(layer)
        return self.owners[id(layer)]

    def unique(self, path: str) -> str:
        candidate, count = path, 1
        while candidate in self.ids or candidate == INPUT:
            candidate = f"{path}_{count}"
            count += 1
        self.ids.add(candidate)
        return candidate


def _is_block(layer) -> bool:
    """A layer whose `call` is the user's (subclassed), not one of Keras's own layers."""
    return isinstance(layer, keras.layers.Layer) and not type(layer).__module__.startswith("keras.")


def _attribute_names(layer) -> Dict[int, str]:
    """id(sublayer) -> the attribute that holds it ("convs_0" for an item of a list)."""
    names: Dict[int, str] = {}
    for attribute, value in vars(layer).items():
        if attribute.startswith("_"):
            continue
        items: Sequence = value if isinstance(value, (list, tuple)) else [value]
        for index, item in enumerate(items):
            if isinstance(item, keras.layers.Layer) and id(item) not in names:
                names[id(item)] = attribute if items is not value else f"{attribute}_{index}"
    return names


@contextlib.contextmanager
def _restoring_nodes(layer):
    """Calling a block symbolically adds graph nodes to the layers inside it; put
    their node lists back afterwards so the user's model is unchanged."""
    inner = list(layer._flatten_layers(include_self=True, recursive=True))
    saved = [(item, list(item._inbound_nodes), list(item._outbound_nodes)) for item in inner]
    try:
        yield
    finally:
        for item, inbound, outbound in saved:
            item._inbound_nodes[:] = inbound
            item._outbound_nodes[:] = outbound
