"""The MXNet Gluon tracer: a user's Gluon block -> `TracedGraph` (see
`refnets.trace.graph`), its real operator graph read as an MXNet Symbol.

Two ways to get the Symbol (mxnet 1.9.1):
- a `HybridBlock` is called on `mx.sym.var("data")`; its parameters are
  variables named by `Parameter.name`, its operators carry Gluon's names
  ("conv0_fwd", "conv0_relu_fwd", "resblock0__plus0");
- a plain `Block` (whose `forward` calls `nd.*`) runs once under
  `autograd.record(train_mode=False)` (hybridized children run imperatively for
  it), and `autograd.get_symbol(output)` is the recorded graph. Its variables
  are anonymous ("var3", "null5"): MXNet gives an NDArray a variable node when it
  is marked for gradients (Gluon marks every parameter with grad_req != 'null'
  when it initialises it) or, for an unmarked one (BatchNorm's running
  statistics), when a recorded operator first reads it, and keeps that node on
  the NDArray. So `autograd.get_symbol(param.data()).name` after the run is the
  variable's name: parameters are matched by identity, not by value. Operators
  are named "node_<k>"; forward hooks tell which block ran each one (the ops
  between a call's inputs and its outputs, innermost call first), and they are
  renamed in Gluon's style: "<block>_fwd" for an op that reads the block's own
  parameters or runs in a block without children ("conv0_fwd", and
  "conv0_relu_fwd" for the fused activation, a child block), and
  "<block>_<op><n>" for functional ops in a forward ("inception0_concat0").
  MXNet records no op whose inputs are all outside the graph, so the input is
  marked for gradients; an NDArray's `reshape` is recorded with its resolved
  numbers, so the block is recorded at a second batch size as well.

Shapes come from `infer_shape` on the graph's internals at batch 2 (a symbolic
reshape that hard-codes the batch is caught); every spec leaf's output shape is
checked against MXNet's own. Weights are the parameters' arrays, already in the
canonical layouts (OIHW, (out, in)), cast to the requested dtype; a parameter
read by several operators gives ops of one `owner` (shared weights).
"""

from __future__ import annotations

import contextlib
import json
from typing import Dict, List, Optional, Tuple

import numpy as np

from ... import rules
from ... import spec as S
from ...trace.graph import INPUT, TracedGraph, TracedOp, UntraceableError, untraceable
from . import read
from .framework import autograd, mx, nn
from .trace_ops import Alias, OpNode, Param, convert

BATCH = 2  # the batch size shapes are inferred at


class _Read:
    """A traced Symbol before mapping: its JSON nodes, what each variable is
    (INPUT, a `Param` or None for a constant), each op's readable id and block."""

    def __init__(self, symbol, variables: Dict[str, object], ids: Dict[int, str], layers: Dict[int, str]):
        self.symbol = symbol
        self.graph = json.loads(symbol.tojson())
        self.nodes = self.graph["nodes"]
        self.variables = variables
        self.ids = ids
        self.layers = layers
        self.at_other_batch: Dict[int, Dict[str, str]] = {}  # recorded ops: their attributes at batch BATCH + 1


def graph(model, input_shape, dtype: str = "float32") -> TracedGraph:
    """The op graph of a Gluon block at input (C, H, W) (NCHW, as the spec), mapped
    to the vocabulary, weights in `dtype`. Raises UntraceableError naming the first
    operator the vocabulary lacks."""
    if not read.is_model(model):
        raise TypeError(f"an mxnet.gluon Block is needed, got {type(model).__name__}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input shape must be C,H,W, got {input_shape!r}")
    with autograd.pause(train_mode=False):  # finishes deferred initialisation
        model(read.input_array(model, np.zeros((1,) + shape)))
    found = _symbolic(model) if isinstance(model, nn.HybridBlock) else _recorded(model, shape)
    return _build(found, shape, dtype)


# ------------------------------------------------------------------ owners


def _owners(model) -> Dict[int, str]:
    """id(Parameter) -> the path of the block that holds it (its Gluon name for the model itself)."""
    owners: Dict[int, str] = {}
    for path, block in read.block_paths(model).items():
        for param in read.own_params(block).values():
            owners.setdefault(id(param), path or block.name)
    return owners


def _params(model) -> List[Param]:
    owners = _owners(model)
    return [Param(p, owners.get(id(p), p.name.rpartition("_")[0] or p.name))
            for p in model.collect_params().values()]


def _label(path: str, block) -> str:
    return f"{path} ({block.name})" if path else block.name


def _unique(name: str, used: set) -> str:
    candidate, count = name, 0
    while candidate in used:
        count += 1
        candidate = f"{name}_{count}"
    used.add(candidate)
    return candidate


def _one_output(model, out):
    if isinstance(out, (list, tuple)) or len(out.list_outputs()) != 1:
        raise UntraceableError(f"block {model.name!r} returns several outputs: a spec has one")
    return out


# ------------------------------------------------------------ a HybridBlock


def _symbolic(model) -> _Read:
    """A HybridBlock called on a Symbol: Gluon's names for ops and parameters."""
    symbol = model(mx.sym.var("data"))
    symbol = _one_output(model, symbol if isinstance(symbol, mx.sym.Symbol) else tuple(symbol))
    variables: Dict[str, object] = {"data": INPUT}
    variables.update({p.param.name: p for p in _params(model)})
    prefixes = sorted(((b.prefix, _label(path, b)) for path, b in read.block_paths(model).items()),
                      key=lambda item: -len(item[0]))
    found = _Read(symbol, variables, {}, {})
    used: set = set()
    for index, node in enumerate(found.nodes):
        if node["op"] != "null":
            found.ids[index] = _unique(node["name"], used)
            found.layers[index] = next((label for prefix, label in prefixes if node["name"].startswith(prefix)),
                                       _label("", model))
    return found


# ------------------------------------------------------------ a plain Block


@contextlib.contextmanager
def _imperative(model):
    """Hybridized blocks inside run imperatively, so that autograd records their ops."""
    active = [b for b in read.block_paths(model).values() if getattr(b, "_active", False)]
    for block in active:
        block._active = False
    try:
        yield
    finally:
        for block in active:
            block._active = True


def _names(value) -> List[str]:
    """The autograd node names of the NDArrays in a block's inputs or output."""
    if isinstance(value, (list, tuple)):
        return [name for item in value for name in _names(item)]
    if not isinstance(value, mx.nd.NDArray):
        return []
    try:
        return [autograd.get_symbol(value).name]
    except mx.base.MXNetError:  # not part of the recorded graph
        return []


def _record(model, batch: int, shape: Tuple[int, ...], hook=None):
    """The input (marked for gradients, so that every op downstream of it is
    recorded: MXNet records no op whose inputs are all outside the graph) and the
    recorded graph of one run at `batch`."""
    x = read.input_array(model, np.zeros((batch,) + shape))
    x.attach_grad()
    handles = [b.register_forward_hook(hook) for b in read.block_paths(model).values()] if hook else []
    try:
        with _imperative(model), autograd.record(train_mode=False):
            out = model(x)
    except mx.base.MXNetError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UntraceableError(f"block {model.name!r} fails on a batch of {batch} ({first}): a spec holds for any "
                               f"batch size; does the block hard-code one?") from error
    finally:
        for handle in handles:
            handle.detach()
    if isinstance(out, (list, tuple)):
        raise UntraceableError(f"block {model.name!r} returns several outputs: a spec has one")
    return x, autograd.get_symbol(out)


def _recorded(model, shape: Tuple[int, ...]) -> _Read:
    """A plain Block run under autograd recording; each op attributed to the
    innermost block call that computed it. An NDArray's `reshape` is recorded with
    the shape it resolved to ((0, -1) becomes (batch, C*H*W)), so the block runs
    at a second batch size too: a reshape that keeps the batch follows it."""
    paths = {id(b): path for path, b in read.block_paths(model).items()}
    calls: List[tuple] = []  # (block, names of its inputs, names of its outputs), innermost first

    def hook(block, inputs, output):
        calls.append((block, _names(inputs), _names(output)))

    x, symbol = _record(model, BATCH, shape, hook)
    variables: Dict[str, object] = {}
    for param in _params(model):
        if param.param._data is not None:  # an unused block's deferred parameters never exist
            variables.update({name: param for name in _names(param.param.data())})
    variables.update({name: INPUT for name in _names(x)})
    found = _Read(symbol, variables, {}, {})
    other = json.loads(_record(model, BATCH + 1, shape)[1].tojson())["nodes"]
    if [node["op"] for node in other] != [node["op"] for node in found.nodes]:
        raise UntraceableError(f"block {model.name!r} runs different ops at batch sizes {BATCH} and {BATCH + 1}")
    found.at_other_batch = {i: node.get("attrs") or {} for i, node in enumerate(other) if node["op"] != "null"}
    callers = _callers(found.nodes, calls)
    used: set = set()
    counts: Dict[tuple, int] = {}
    for index, node in enumerate(found.nodes):
        if node["op"] == "null":
            continue
        call = callers.get(index, len(calls))
        block = calls[call][0] if call < len(calls) else model
        found.layers[index] = _label(paths.get(id(block), ""), block)
        own = {id(p) for p in read.own_params(block).values()}
        reads_own = any(id(getattr(found.variables.get(found.nodes[source]["name"]), "param", None)) in own
                        for source, *_ in node["inputs"])
        if reads_own or not block._children:  # the layer's own op, as Gluon names it: "conv0_fwd"
            name = f"{block.name}_fwd"
        else:  # a functional op in a forward, as Gluon's symbols name it: "inception0_concat0"
            key = (id(block), node["op"])
            counts[key] = counts.get(key, -1) + 1
            name = f"{block.name}_{node['op'].lower().strip('_')}{counts[key]}"
        found.ids[index] = _unique(name, used)
    return found


def _callers(nodes: List[dict], calls: List[tuple]) -> Dict[int, int]:
    """Op index -> the index of the first (innermost) block call whose outputs
    depend on it and whose inputs do not."""
    index_of = {node["name"]: i for i, node in enumerate(nodes)}

    def closure(names: List[str]) -> set:
        seen: set = set()
        stack = [index_of[n] for n in names if n in index_of]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(source for source, *_ in nodes[current]["inputs"])
        return seen

    callers: Dict[int, int] = {}
    for number, (_block, inputs, outputs) in enumerate(calls):
        for index in closure(outputs) - closure(inputs):
            callers.setdefault(index, number)
    return callers


# ------------------------------------------------------------ mapping


def _shapes(found: _Read, shape: Tuple[int, ...]) -> Dict[int, Tuple[int, ...]]:
    """Op index -> its first output's shape at batch BATCH, from MXNet's shape inference
    (the ops are renamed to their unique ids first: a reused block repeats names)."""
    graph = json.loads(json.dumps(found.graph))
    for index, op_id in found.ids.items():
        graph["nodes"][index]["name"] = op_id
    internals = mx.sym.load_json(json.dumps(graph)).get_internals()
    known: Dict[str, Tuple[int, ...]] = {}
    for node in found.nodes:
        role = found.variables.get(node["name"]) if node["op"] == "null" else None
        if role is INPUT:
            known[node["name"]] = (BATCH,) + shape
        elif isinstance(role, Param):
            known[node["name"]] = tuple(role.param.shape)
    _, outputs, _ = internals.infer_shape(**known)
    by_name: Dict[str, Tuple[int, ...]] = {}
    for name, out in zip(internals.list_outputs(), outputs):
        stem = name.rsplit("_output", 1)[0]
        by_name.setdefault(stem, tuple(out))
    return {index: by_name[op_id] for index, op_id in found.ids.items()}


def _op_node(found: _Read, index: int, values: Dict[int, str], shapes, dtype: str) -> OpNode:
    node = found.nodes[index]
    inputs: List[Optional[str]] = []
    params: List[Optional[Param]] = []
    in_shapes: List[Tuple[int, ...]] = []
    for source, output, *_ in node["inputs"]:
        src = found.nodes[source]
        if src["op"] == "null":
            role = found.variables.get(src["name"])
            inputs.append(INPUT if role is INPUT else None)
            params.append(role if isinstance(role, Param) else None)
            in_shapes.append(shapes["<input>"] if role is INPUT else
                             tuple(role.param.shape) if isinstance(role, Param) else ())
            continue
        if output != 0:
            raise untraceable(node["op"], found.layers[index], f"it reads output {output} of {src['op']!r}")
        inputs.append(values[source])
        params.append(None)
        in_shapes.append(shapes[source])
    return OpNode(id=found.ids[index], op=node["op"], attrs=dict(node.get("attrs") or {}),
                  layer=found.layers[index], inputs=inputs, params=params, in_shapes=in_shapes,
                  out_shape=shapes[index], dtype=dtype, at_other_batch=found.at_other_batch.get(index))


def _check_shape(node: OpNode, ops: List[TracedOp]) -> None:
    """The spec leaves compute the shape MXNet computes (a pool's 'full' convention
    keeps windows PyTorch's ceil mode drops, for one)."""
    if not ops or ops[0].node is None:
        return
    shape = tuple(node.in_shapes[0][1:])
    try:
        for op in ops:
            if isinstance(op.node, S.GlobalAvgPool):
                shape = (shape[0], 1, 1)
            else:
                shape = tuple(rules.rule(op.node).out_shape(op.id, op.node, shape))
    except ValueError as error:
        raise node.refuse(f"the spec cannot apply it: {error}") from error
    if shape != tuple(node.out_shape[1:]):
        hint = ("; MXNet's 'full' pooling convention keeps a last window that starts in the padding, the "
                "spec's ceil mode (PyTorch's) drops it") if node.attrs.get("pooling_convention") == "full" else ""
        raise node.refuse(f"MXNet computes shape {tuple(node.out_shape[1:])}, the spec would compute {shape}{hint}")


class _Owners:
    """One owner per set of parameters: a parameter read by several ops means the
    same layer applied again only if those ops read the same parameters."""

    def __init__(self):
        self.key_of: Dict[int, frozenset] = {}
        self.name_of: Dict[frozenset, str] = {}

    def fix(self, node: OpNode, ops: List[TracedOp]) -> None:
        key = frozenset(id(p.param) for p in node.params if p is not None)
        if not key:
            return
        if any(self.key_of.setdefault(k, key) != key for k in key):
            raise node.refuse("it shares only some of its parameters with another op")
        if key not in self.name_of:
            owner = next(op.owner for op in ops if op.weights) if any(op.weights for op in ops) else node.id
            if owner in self.name_of.values():
                owner = f"{owner}:{node.id}"
            self.name_of[key] = owner
        for op in ops:
            if op.weights:
                op.owner = self.name_of[key]


def _build(found: _Read, shape: Tuple[int, ...], dtype: str) -> TracedGraph:
    shapes = _shapes(found, shape)
    shapes["<input>"] = (BATCH,) + shape
    values: Dict[int, str] = {}
    ops: List[TracedOp] = []
    owners = _Owners()
    for index, node in enumerate(found.nodes):
        if node["op"] == "null":
            if found.variables.get(node["name"]) is INPUT:
                values[index] = INPUT
            continue
        op_node = _op_node(found, index, values, shapes, dtype)
        result = convert(op_node)
        if isinstance(result, Alias):
            values[index] = result.source
            continue
        _check_shape(op_node, result)
        owners.fix(op_node, result)
        ops.extend(result)
        values[index] = result[-1].id
    head, output, *_ = found.graph["heads"][0]
    if values.get(head, INPUT) == INPUT or output != 0:
        raise UntraceableError("the model's output is its input (or no operator's first output)")
    return TracedGraph(ops=ops, output=values[head], input_shape=shape, framework="mxnet")
