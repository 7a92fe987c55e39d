"""A PyTorch model's real graph -> `TracedGraph` (refnets/trace/graph.py).

The graph is read with `torch.export.export`, not `torch.fx.symbolic_trace`: the
export runs the forward on fake tensors, so functional code (`F.relu`, `torch.cat`,
`x.view(x.size(0), -1)`, `x + y`) and modules created inside `forward`
(`nn.AvgPool2d(x.shape[2])`) all appear as aten ops with known shapes. Parameters
and buffers are lifted to placeholders; `ep.graph_signature` maps them back to
their state-dict names, and the values are the model's own tensors (torch's
layouts, OIHW and (out, in), are the canonical ones).

An op's `owner` is the module path of its parameters ("layer1.0.conv1" for
"layer1.0.conv1.weight"), so a module applied at three places gives three ops
with one owner, which decomposition turns into `spec.Shared`. Parameter-free ops
are named after the leaf module that runs them ("layer1.0.relu"), or after the op
inside the module whose forward calls them ("layer1.0.add", "relu_2" at the top).

The aten op -> spec mapping is in `trace_ops`.
"""

from __future__ import annotations

import operator
import re
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np
import torch

from ... import spec as S
from ...trace.graph import INPUT, TracedGraph, TracedOp, UntraceableError, untraceable
from . import trace_ops
from .framework import DTYPES, nn

BATCH = 2  # traced at batch 2, so a reshape that mixes the batch into the features shows


def graph(model: nn.Module, input_shape, dtype: str = "float32") -> TracedGraph:
    """The traced graph of `model` at input (C, H, W), weights as numpy `dtype`."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    exported = export(model, tuple(int(v) for v in input_shape))
    return _Reader(model, exported, dtype).read(tuple(int(v) for v in input_shape))


def export(model: nn.Module, input_shape: Tuple[int, int, int]):
    """`torch.export.export` of the model in eval mode (its mode is restored after)."""
    param = next(iter(model.parameters()), None)
    example = torch.zeros((BATCH,) + tuple(input_shape), dtype=param.dtype if param is not None else torch.float32)
    was_training = model.training
    try:
        return torch.export.export(model.eval(), (example,))
    except Exception as error:  # noqa: BLE001 - any failure of the export is "cannot be traced"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UntraceableError(f"torch.export could not read {type(model).__name__}: {first}") from error
    finally:
        model.train(was_training)


def bind(target, node) -> Dict[str, Any]:
    """The call's arguments by schema name, the op's defaults filled in."""
    bound: Dict[str, Any] = {}
    for index, argument in enumerate(target._schema.arguments):
        if index < len(node.args) and not argument.kwarg_only:
            bound[argument.name] = node.args[index]
        elif argument.name in node.kwargs:
            bound[argument.name] = node.kwargs[argument.name]
        elif argument.has_default_value():
            bound[argument.name] = argument.default_value
    return bound


def short_name(target) -> str:
    """aten::max_pool2d_with_indices -> 'max_pool2d', aten::relu_ -> 'relu', for op ids."""
    name = target._schema.name.split("::")[-1].strip("_")
    return {"max_pool2d_with_indices": "max_pool2d", "softmax": "softmax"}.get(name, name)


class _Reader:
    """Walks the exported graph once, in its (topological) order."""

    def __init__(self, model: nn.Module, exported, dtype: str):
        self.model, self.exported, self.dtype = model, exported, dtype
        self.modules = dict(model.named_modules(remove_duplicate=False))
        self.tensors: Dict[str, torch.Tensor] = {
            **dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers(remove_duplicate=False)),
            **{name: value for name, value in exported.constants.items() if isinstance(value, torch.Tensor)}}
        signature = exported.graph_signature
        self.lifted: Dict[str, str] = {**signature.inputs_to_parameters, **signature.inputs_to_buffers,
                                       **signature.inputs_to_lifted_tensor_constants}
        self.user_inputs = list(signature.user_inputs)
        if signature.buffers_to_mutate:
            raise UntraceableError(f"{type(model).__name__} changes its buffers in forward "
                                   f"({', '.join(sorted(signature.buffers_to_mutate.values()))}): not a pure function")
        self.values: Dict[Any, str] = {}  # fx node -> the op id (or INPUT) holding its value
        self.tuples: Dict[Any, str] = {}  # fx node of an op returning a tuple -> the op id of its element 0
        self.unusable: Dict[Any, UntraceableError] = {}  # values that fail when read (a pool's indices)
        self.ops: List[TracedOp] = []
        self.ids: Set[str] = set()
        self.owners: Dict[str, Tuple[str, ...]] = {}
        self.output: Optional[str] = None

    # ------------------------------------------------------------------ the walk

    def read(self, input_shape) -> TracedGraph:
        for node in self.exported.graph.nodes:
            if node.op == "placeholder":
                self.placeholder(node)
            elif node.op == "call_function":
                self.call(node)
            elif node.op == "output":
                self.set_output(node)
            else:
                raise untraceable(str(node.target), self.layer_label(node), f"an fx {node.op} node")
        ops, output = fold_global_pool_flatten(self.ops, self.output)
        return TracedGraph(ops=ops, output=output, input_shape=input_shape, framework="torch")

    def placeholder(self, node) -> None:
        if node.name in self.lifted:
            return
        if node.name not in self.user_inputs or len(self.user_inputs) != 1:
            raise UntraceableError(f"{type(self.model).__name__} takes {len(self.user_inputs)} inputs; the "
                                   f"vocabulary has models of one input")
        self.values[node] = INPUT

    def data_inputs(self, node) -> List[Any]:
        found: List[Any] = []
        torch.fx.node.map_arg((node.args, node.kwargs), found.append)
        for value in found:
            if value in self.unusable:
                raise self.unusable[value]
        return [value for value in found if value in self.values or value in self.tuples]

    def call(self, node) -> None:
        if not self.data_inputs(node):
            return  # computed from parameters alone (a transposed weight): read when used
        if node.target is operator.getitem:
            self.getitem(node)
            return
        target = node.target
        schema = getattr(target, "_schema", None)
        name = schema.name.split("::")[-1] if schema is not None else str(target)
        op = str(target)
        if schema is None or not schema.name.startswith("aten::"):
            raise untraceable(op, self.layer_label(node), self.where(node))
        if name in trace_ops.IGNORED:
            return
        mapper = trace_ops.MAPPERS.get(name)
        if mapper is None:
            raise untraceable(op, self.layer_label(node), self.where(node))
        call = trace_ops.Call(op=op, name=name, args=bind(target, node), layer=self.layer_label(node),
                              shape=self.shape, out_shape=self.shape(node), where=self.where(node))
        mapped = mapper(call)
        for value in mapped.inputs:
            if value not in self.values:
                raise call.fail("it reads a constant tensor where the vocabulary needs the data")
        if mapped.alias:
            self.values[node] = self.values[mapped.inputs[0]]
            return
        self.emit(node, call, mapped)

    def emit(self, node, call: trace_ops.Call, mapped: trace_ops.Mapped) -> None:
        weights: Dict[str, np.ndarray] = {}
        names: List[str] = []
        for role, placeholder in mapped.params.items():
            if placeholder is None:
                continue
            name, array = self.param(placeholder, call)
            weights[role] = array
            names.append(name)
        owner = ""
        if names:
            first_role = next(role for role, p in mapped.params.items() if p is not None)
            owner = names[0][: -len(first_role) - 1] if names[0].endswith("." + first_role) else names[0]
            self.check_owner(owner, tuple(names), call, mapped.node)
        op_id = self.unique(owner) if owner else self.name_free(node)
        self.ops.append(TracedOp(op_id, tuple(self.values[v] for v in mapped.inputs), node=mapped.node,
                                 merge=mapped.merge, weights=weights, owner=owner))
        if isinstance(node.meta.get("val"), (tuple, list)):
            self.tuples[node] = op_id
        else:
            self.values[node] = op_id

    def getitem(self, node) -> None:
        source, index = node.args
        if source not in self.tuples:
            raise untraceable("getitem", self.layer_label(node), "indexing a tensor")
        if index == 0:
            self.values[node] = self.tuples[source]
        else:
            self.unusable[node] = untraceable(f"{source.target} output {index}", self.layer_label(node),
                                              "only the op's first output (its value) is in the vocabulary")

    def set_output(self, node) -> None:
        outputs = node.args[0] if isinstance(node.args[0], (tuple, list)) else (node.args[0],)
        label = type(self.model).__name__
        if len(outputs) != 1:
            raise UntraceableError(f"{label} returns {len(outputs)} outputs; the vocabulary has models of one output")
        (value,) = outputs
        if value in self.unusable:
            raise self.unusable[value]
        if value not in self.values:
            raise UntraceableError(f"{label} returns something other than a tensor computed from its input")
        if self.values[value] == INPUT:
            raise UntraceableError(f"{label} returns its input unchanged: there is nothing to trace")
        self.output = self.values[value]

    # ---------------------------------------------------------- params and names

    def shape(self, value) -> Tuple[int, ...]:
        fake = value.meta.get("val") if hasattr(value, "meta") else None
        if isinstance(fake, (tuple, list)):
            fake = fake[0]
        if not isinstance(fake, torch.Tensor):
            raise UntraceableError(f"the export recorded no tensor shape for {value}")
        return tuple(int(d) for d in fake.shape)

    def param(self, placeholder, call: trace_ops.Call) -> Tuple[str, np.ndarray]:
        """(state-dict name, canonical array) of a weight argument: a lifted parameter,
        buffer or constant, or the transpose (`t`) of one (addmm's weight)."""
        transpose = False
        if getattr(placeholder, "op", None) == "call_function" and placeholder.target in (torch.ops.aten.t.default,
                                                                                           torch.ops.aten.numpy_T.default):
            placeholder, transpose = placeholder.args[0], True
        name = self.lifted.get(getattr(placeholder, "name", None))
        if name is None or name not in self.tensors:
            raise call.fail(f"its weight {placeholder} is computed, not a parameter of the model")
        array = self.tensors[name].detach().cpu().numpy()
        return name, np.array(array.T if transpose else array, dtype=self.dtype)

    def check_owner(self, owner: str, names: Tuple[str, ...], call: trace_ops.Call, node: S.Node) -> None:
        """One owner, one set of parameters; a BatchNorm's cumulative average
        (`momentum=None`) has no spec equivalent."""
        if self.owners.setdefault(owner, names) != names:
            raise call.fail(f"parameters {', '.join(names)} used with {', '.join(self.owners[owner])} of one layer")
        module = self.modules.get(owner)
        if isinstance(node, S.BatchNorm) and module is not None and getattr(module, "momentum", 0.1) is None:
            raise call.fail("BatchNorm momentum=None (a cumulative average of the batch statistics)")

    def module_path(self, node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            return ""
        path = list(stack.values())[-1][0]
        return re.sub(r"^L\['self'\]\.?", "", str(path))

    def layer_label(self, node) -> str:
        return self.module_path(node) or type(self.model).__name__

    def where(self, node) -> str:
        """The user's source line that made the op ("at net.py:12: x = F.gelu(x)")."""
        trace = (node.meta.get("stack_trace") or "").strip().splitlines()
        for index in range(len(trace) - 1, -1, -1):
            found = re.match(r'\s*File "([^"]+)", line (\d+)', trace[index])
            if found:
                code = trace[index + 1].strip() if index + 1 < len(trace) else ""
                return f"at {found.group(1).rsplit('/', 1)[-1]}:{found.group(2)}: {code}"
        return ""

    def name_free(self, node) -> str:
        """A parameter-free op: its leaf module's path, or '<module>.<op>' inside a
        module's forward, or the op's name at the top ('relu', 'relu_1' ...)."""
        path = self.module_path(node)
        module = self.modules.get(path)
        if path and module is not None and not any(True for _ in module.children()):
            return self.unique(path)
        op = short_name(node.target)
        return self.unique(f"{path}.{op}" if path else op, reserved=set(self.modules))

    def unique(self, base: str, reserved: Set[str] = frozenset()) -> str:
        name, count = base, 0
        while name in self.ids or name in reserved or name == INPUT:
            count += 1
            name = f"{base}_{count}"
        self.ids.add(name)
        return name


def fold_global_pool_flatten(ops: List[TracedOp], output: str) -> Tuple[List[TracedOp], str]:
    """GlobalAvgPool(keepdims=True) read only by a Flatten -> GlobalAvgPool(keepdims=False):
    the same values, and the classic spec (pool, then dense) for
    `AdaptiveAvgPool2d((1, 1))` + `torch.flatten(x, 1)`."""
    readers: Dict[str, List[TracedOp]] = {}
    for op in ops:
        for source in op.inputs:
            readers.setdefault(source, []).append(op)
    renamed: Dict[str, str] = {}
    kept: Dict[str, TracedOp] = {}
    for op in ops:
        op.inputs = tuple(renamed.get(i, i) for i in op.inputs)
        source = kept.get(op.inputs[0]) if isinstance(op.node, S.Flatten) else None
        if (source is not None and isinstance(source.node, S.GlobalAvgPool) and source.node.keepdims
                and len(readers[source.id]) == 1 and source.id != output):
            source.node = S.GlobalAvgPool(keepdims=False)
            renamed[op.id] = source.id
            continue
        kept[op.id] = op
    return list(kept.values()), renamed.get(output, output)
