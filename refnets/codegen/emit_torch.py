"""Plan -> PyTorch source: an `nn.Module` class per block kind, the stage tables,
`build(**options)` and `load_canonical(model, path)`.

Module names are the spec's segment names (containers as `nn.Sequential` where
one holds them, else `nn.ModuleDict` with the merge written in `forward`), so the
state_dict keys are the canonical names, as in refnets' own torch backend; each
node is realised by the same torch op as there, so the outputs agree bit for bit.

This module imports no framework.
"""

from __future__ import annotations

from typing import List

from .. import spec as S
from .leaves import padding_mode, pool_mode
from .plan import ClassPlan, Plan
from .structure import FUNCTIONAL, Template, identifier, kids, numbered, var_name
from .writer import Source, brackets, call, literal, string

ACTIVATION_MODULES = {"relu": "nn.ReLU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()",
                      "softmax": "nn.Softmax(dim=1)"}
ACTIVATION_CALLS = {"relu": "F.relu({})", "sigmoid": "torch.sigmoid({})", "tanh": "torch.tanh({})",
                    "softmax": "F.softmax({}, dim=1)"}
COMPOSE = 56
MERGE = 60
KEYWORDS = 5  # an instance with at most this many arguments names them  # a merge of longer branch expressions names the branches first  # compose calls in forward up to this many characters, as people write them


def too_deep(expr: str) -> bool:
    """Past what people write on one line: long, or more than two calls deep."""
    return len(expr) > COMPOSE or expr.count("(") - expr.count("((") > 2


class ClassWriter:
    """One nn.Module class. The framework's names are class attributes, so the
    Gluon writer (emit_gluon) reuses the walk with its own."""

    BASE, FORWARD = "nn.Module", "forward(self, x)"
    SEQUENTIAL, DICT, ADD = "nn.Sequential", "nn.ModuleDict", "add_module"
    ACTIVATION_CALLS = ACTIVATION_CALLS
    FLATTEN, MEAN, MEAN_KEEP = "torch.flatten({}, 1)", "{}.mean((2, 3))", "{}.mean((2, 3), keepdim=True)"
    CONCAT = "torch.cat([{}], 1)"

    def add_child(self, segment: str, expr):
        """Register a child whose name is no identifier."""
        return call("self.add_module", string(segment), expr)

    def __init__(self, emitter, cls: ClassPlan):
        self.emitter, self.cls = emitter, cls
        self.t = Template(emitter.plan, cls)
        self.locals = set(cls.params) | {"self", "x"}
        self.init: List[tuple] = []  # (prefix, expr)
        self.forward: List[str] = []
        self.access = {cls.path: "self"}

    # ------------------------------------------------------------------ __init__

    def leaf(self, node: S.Node, path: str):
        t, need = self.t, self.emitter.need
        e = lambda fld: t.expr(path, fld)  # noqa: E731
        if isinstance(node, S.Conv2d):
            args = [e("in_channels"), e("out_channels"), e("kernel")]
            kw = {k: e(k) for k, default in (("stride", "1"), ("padding", "0"), ("dilation", "1"), ("groups", "1"))
                  if self.has(path, k) and e(k) != default}
            if not node.bias:
                kw["bias"] = "False"
            if node.padding == S.SAME:
                need.add("SameConv2d")
                return call("SameConv2d", *args, **kw)
            if padding_mode(node.padding) == "asym":
                need.add("PaddedConv2d")
                return call("PaddedConv2d", *args, **kw)
            return call("nn.Conv2d", *args, **kw)
        if isinstance(node, S.Dense):
            return call("nn.Linear", e("in_features"), e("out_features"), **({} if node.bias else {"bias": "False"}))
        if isinstance(node, S.BatchNorm):
            return self.batchnorm(node, path)
        if isinstance(node, (S.MaxPool, S.AvgPool)):
            return self.pool(node, path)
        if isinstance(node, S.Activation):
            return ACTIVATION_MODULES[node.kind]
        if isinstance(node, S.GlobalAvgPool):
            need.add("GlobalAvgPool")
            return call("GlobalAvgPool", *(["keepdim=True"] if node.keepdims else []))
        if isinstance(node, S.AdaptiveAvgPool):
            return call("nn.AdaptiveAvgPool2d", e("output_size"))
        if isinstance(node, S.ZeroPad):
            pad = e("padding")
            side = literal((node.padding[2], node.padding[3], node.padding[0], node.padding[1])) \
                if pad.startswith("(") else f"({pad}[2], {pad}[3], {pad}[0], {pad}[1])"
            return call("nn.ZeroPad2d", side)
        if isinstance(node, S.Dropout):
            return call("nn.Dropout", *([] if e("rate") == "0.5" else [e("rate")]))
        if isinstance(node, S.Flatten):
            return "nn.Flatten()"
        if isinstance(node, S.Identity):
            return "nn.Identity()"
        raise TypeError(f"no PyTorch module for {type(node).__name__}")

    def has(self, path, fld) -> bool:
        return (self.t.rel(path), fld) in self.cls.exprs

    def batchnorm(self, node: S.BatchNorm, path: str):
        e = lambda fld: self.t.expr(path, fld)  # noqa: E731
        kw = {}
        if e("eps") != "1e-05":
            kw["eps"] = e("eps")
        if e("momentum") != "0.1":
            kw["momentum"] = e("momentum")
        if not node.affine:
            kw["affine"] = "False"
        if not node.unbiased_running_var:
            self.emitter.need.add("BiasedVarBatchNorm")
            return call("BiasedVarBatchNorm", e("num_features"), **kw)
        dims = "2d" if len(self.emitter.plan.infos[path].in_shape) == 3 else "1d"
        return call(f"nn.BatchNorm{dims}", e("num_features"), **kw)

    def pool(self, node, path: str):
        e = lambda fld: self.t.expr(path, fld)  # noqa: E731
        is_max = isinstance(node, S.MaxPool)
        mode = pool_mode(node)
        if mode == "plain":
            kw = {"padding": e("padding")} if e("padding") != "0" else {}
            if e("ceil_mode") != "False":
                kw["ceil_mode"] = e("ceil_mode")
            if not is_max and e("count_include_pad") != "True":
                kw["count_include_pad"] = e("count_include_pad")
            return call("nn.MaxPool2d" if is_max else "nn.AvgPool2d", e("kernel"), e("stride"), **kw)
        self.emitter.need.add("PaddedPool2d")
        pair = lambda v: v if v.startswith("(") else f"({v}, {v})"  # noqa: E731
        padding = string("same") if mode == "same" else e("padding")
        kw = {"ceil_mode": e("ceil_mode")} if e("ceil_mode") != "False" else {}
        if not is_max and e("count_include_pad") != "True":
            kw["count_include_pad"] = e("count_include_pad")
        return call("PaddedPool2d", string("max" if is_max else "avg"), pair(e("kernel")), pair(e("stride")),
                    padding, **kw)

    def construct(self, node: S.Node, path: str):
        """The expression building the module at `path` (statements for its
        containers' parts go to __init__ first)."""
        t = self.t
        if t.instance(path) is not None:
            child, args = t.instance(path), t.args(path)
            if len(args) > KEYWORDS:  # a long row of numbers, as torchvision writes Inception(192, 64, ...)
                return call(child.name, *args)
            return call(child.name, args[0], **dict(zip(child.params[1:], args[1:])))
        stage = t.stage(path)
        if stage is not None:
            self.emitter.need.add("make_stage")
            kw = {"prefix": string(stage.prefix)} if stage.prefix else {}
            if stage.start:
                kw["start"] = str(stage.start)
            return call("make_stage", t.expr(path, "in_channels"),
                        f"STAGES[{string(t.rel(path))}]", **kw)
        if not isinstance(node, S.CONTAINERS):
            return self.leaf(node, path)
        if t.sequential_callable(node, path) and numbered(node):
            return call(self.SEQUENTIAL, *[self.construct(c, p) for _, p, c in kids(node, path)])
        name = var_name(node.name or "block", self.locals)
        callable_seq = t.sequential_callable(node, path)
        self.init.append((f"{name} = ", f"{self.SEQUENTIAL}()" if callable_seq else f"{self.DICT}()"))
        for segment, sub_path, child in kids(node, path):
            if not callable_seq and isinstance(child, FUNCTIONAL) and not t.opaque(sub_path):
                continue
            expr = self.construct(child, sub_path)
            if callable_seq:
                self.init.append(("", call(f"{name}.{self.ADD}", string(segment), expr)))
            else:
                self.access[sub_path] = f"{name}[{string(segment)}]"
                self.init.append((f"{name}[{string(segment)}] = ", expr))
        return name

    def build_init(self) -> None:
        node, path = self.cls.node, self.cls.path
        for segment, sub_path, child in kids(node, path):
            if isinstance(child, FUNCTIONAL) and not self.t.opaque(sub_path):
                continue
            expr = self.construct(child, sub_path)
            if identifier(segment):
                self.init.append((f"self.{segment} = ", expr))
            else:
                self.init.append(("", self.add_child(segment, expr)))

    # ------------------------------------------------------------------- forward

    def module_of(self, path: str) -> str:
        """How forward reaches the module at `path`."""
        return module_path(self.emitter.plan, self.t, path)

    def apply(self, node: S.Node, path: str, x: str, var: str) -> str:
        """Forward expression of the node at `path` on `x`; statements assigning
        `var` go to forward first where a chain needs them."""
        t = self.t
        if not t.opaque(path):
            if isinstance(node, S.Activation):
                return self.ACTIVATION_CALLS[node.kind].format(x)
            if isinstance(node, S.Identity):
                return x
            if isinstance(node, S.Flatten):
                return self.FLATTEN.format(x)
            if isinstance(node, S.GlobalAvgPool):
                return (self.MEAN_KEEP if node.keepdims else self.MEAN).format(x)
            if isinstance(node, S.Shared):
                return f"{self.module_of(node.target)}({x})"
        inner = path == self.cls.path
        if not isinstance(node, S.CONTAINERS) or t.opaque(path) or (t.sequential_callable(node, path) and not inner):
            return f"{self.module_of(path)}({x})"
        if isinstance(node, S.Sequential):
            return self.chain(node, path, x, var)
        parts = [self.apply(child, sub_path, x, var_name(segment, self.locals))
                 for segment, sub_path, child in kids(node, path)]
        if any(too_deep(p) for p in parts) or sum(len(p) + 2 for p in parts) > MERGE:
            named = []
            for (segment, _, _), part in zip(kids(node, path), parts):
                if not part.isidentifier():
                    name = var_name(segment, self.locals)
                    self.forward.append(f"{name} = {part}")
                    part = name
                named.append(part)
            parts = named
        return " + ".join(parts) if node.merge == "add" else self.CONCAT.format(", ".join(parts))

    def chain(self, node: S.Sequential, path: str, x: str, var: str) -> str:
        current = x
        for _, sub_path, child in kids(node, path):
            if isinstance(child, S.Parallel) and not self.t.opaque(sub_path) and not current.isidentifier():
                self.forward.append(f"{var} = {current}")
                current = var
            expr = self.apply(child, sub_path, current, var)
            if expr != current and too_deep(expr) and not current.isidentifier():
                self.forward.append(f"{var} = {current}")
                current = var
                expr = self.apply(child, sub_path, current, var)
            current = expr
        return current

    def write(self, src: Source) -> None:
        self.build_init()
        self.locals = set(self.cls.params) | {"self", "x", "F"}  # forward's own names
        result = self.apply(self.cls.node, self.cls.path, "x", "x")
        root = self.cls.path == ""
        src.add(f"class {self.cls.name}({self.BASE}):")
        src.docstring(self.emitter.class_doc(self.cls), 4)
        src.blank()
        params = ", ".join(f"{p}={literal(self.emitter.plan.defaults[p])}" if root else p for p in self.cls.params)
        src.stmt("def __init__", brackets("(", ["self"] + params.split(", "), "):"), 4)
        src.add("super().__init__()", 8)
        for entry in self.init:
            src.stmt(entry[0], entry[1], 8, entry[2] if len(entry) > 2 else "")
        if not root and self.cls.out_expr is not None:
            src.add(f"self.out_channels = {self.cls.out_expr}", 8)
        src.blank()
        src.add(f"def {self.FORWARD}:", 4)
        for line in self.forward:
            src.add(line, 8)
        src.add(f"return {result}", 8)
        src.blank(2)


def module_path(plan: Plan, t: Template, path: str) -> str:
    """The expression reaching the module at `path` from `self` in class `t.cls`:
    attributes on the class itself, `[index]` in an nn.Sequential, `["name"]` in an
    nn.ModuleDict, and inside another class's instance, that class's own layout."""
    if path == t.cls.path:
        return "self"
    up, _, segment = path.rpartition(".")
    if t.cls.path and not path.startswith(t.cls.path + "."):
        raise ValueError(f"{path!r} is outside {t.cls.path!r}")
    base = module_path(plan, t, up)
    if up == t.cls.path:
        return f"{base}.{segment}" if identifier(segment) else f"getattr({base}, {string(segment)})"
    owner = t.instance(up)
    if owner is not None:
        inner = Template(plan, owner)
        mapped = S.join(owner.path, path[len(up) + 1:])
        return base + module_path(plan, inner, mapped)[len("self"):]
    parent = plan.nodes[up]
    if t.stage(up) is not None or t.sequential_callable(parent, up):
        return f"{base}[{[p for _, p, _ in kids(parent, up)].index(path)}]"
    return f"{base}[{string(segment)}]"
