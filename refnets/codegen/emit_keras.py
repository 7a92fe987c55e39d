"""Plan -> Keras source: a builder function per block kind in the
keras.applications style (`x = layers.Conv2D(...)(x)`, one statement per layer,
each layer named by its spec path), stages through `stack` and a stage table.

The functions take the tensor and the block's arguments: the numbers Keras does
not infer from the input (its channel count is `x.shape[-1]` where an argument
needs it). Every layer's name is the node's spec path (`f"{name}.rel"` inside a
function), so canonical weights map by name.

This module imports no framework.
"""

from __future__ import annotations

import ast
import re
from typing import Dict, List

from .. import spec as S
from .leaves import INPUT_FIELDS, padding_mode, pool_mode
from .plan import ClassPlan, Plan
from .structure import Template, kids, var_name
from .writer import WIDTH, Source, brackets, call, flat, literal, string

KEYWORDS = 5  # an instance with more arguments than this passes them positionally
MERGES = {"add": "layers.Add", "concat": "layers.Concatenate"}
WORD = re.compile(r"[A-Za-z_]\w*")


def snake(name: str) -> str:
    """A class name as a function name: ConvReLU -> conv_relu, BNReLU -> bn_relu,
    PoolShortcutBlock -> pool_shortcut_block."""
    name = name.replace("ReLU", "Relu")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def names_in(expr: str) -> set:
    return set(WORD.findall(expr))


def keras_params(plan: Plan):
    """Per class, the arguments its Keras function takes: those used by a layer's
    own numbers (not the input sizes Keras infers) or passed on to a block's
    function; `in_channels` is read from the tensor instead (root: the input).
    Also the classes whose function needs `in_channels`."""
    used: Dict[str, List[str]] = {}
    needs_in = set()
    for cls in plan.classes:
        t = Template(plan, cls)
        seen = set()
        for (rel, fld), expr in cls.exprs.items():
            path = cls.path if rel == "." else S.join(cls.path, rel)
            child = t.instance(path)
            if child is not None:
                keep = fld in used[child.name]
            else:
                keep = t.stage(path) is None and fld not in INPUT_FIELDS
            if keep:
                seen |= names_in(expr)
        if cls.path == "":
            used[cls.name] = list(cls.params)
        else:
            used[cls.name] = [p for p in cls.params if p in seen and p != "in_channels"]
        if "in_channels" in seen:
            needs_in.add(cls.name)
    return used, needs_in


class FunctionWriter:
    def __init__(self, emitter, cls: ClassPlan):
        self.emitter, self.cls = emitter, cls
        self.t = Template(emitter.plan, cls)
        self.root = cls.path == ""
        self.locals = set(cls.params) | {"x", "name", "inputs"} | emitter.reserved
        self.body: List[tuple] = []  # (prefix, expr, suffix)
        self.layer_vars: Dict[str, str] = {}  # Shared target (relative path) -> variable

    def lname(self, path: str, suffix: str = "") -> str:
        """The expression naming the layer of the node at `path`."""
        if self.root:
            return string((path or "root") + suffix)
        rel = self.t.rel(path) if path != self.cls.path else ""
        if not rel and not suffix:
            return "name"
        return 'f"{name}' + (f".{rel}" if rel else "") + suffix + '"'

    def emit(self, prefix: str, expr, suffix: str = "") -> None:
        self.body.append((prefix, expr, suffix))

    def e(self, path: str, fld: str) -> str:
        return self.t.expr(path, fld)

    # -------------------------------------------------------------------- leaves

    def members(self, path: str) -> List[S.Node]:
        plan, cls = self.emitter.plan, self.cls
        rel = path[len(cls.path):] if cls.path else ("." + path if path else "")
        return [plan.nodes[(m + rel).lstrip(".")] for m in cls.members]

    def conv(self, node: S.Conv2d, path: str, x: str, out: str) -> str:
        e = lambda fld: self.e(path, fld)  # noqa: E731
        nodes = self.members(path)
        kw = {}
        mode = padding_mode(node.padding)
        if mode == "same" or all(_same_equivalent(n) for n in nodes):
            if any(n.padding == S.SAME or any(n.padding) for n in nodes):
                kw["padding"] = string("same")
        else:
            x = self.conv_pad(node, path, path, x, out)
        subsample = any(max(n.stride) > 1 and max(n.dilation) > 1 for n in nodes)
        if e("stride") != "1":
            kw["subsample" if subsample else "strides"] = e("stride")
        for fld, arg in (("dilation", "dilation_rate"), ("groups", "groups")):
            if e(fld) != "1":
                kw[arg] = e(fld)
        if not node.bias:
            kw["use_bias"] = "False"
        layer = "StridedDilatedConv2D" if subsample else "layers.Conv2D"
        if subsample:
            self.emitter.need.add(layer)
        return self.layer(path, call(layer, e("out_channels"), e("kernel"), **kw, name=self.lname(path)), x, out)

    def conv_pad(self, node: S.Conv2d, target: str, path: str, x: str, out: str) -> str:
        """The ZeroPadding2D before a conv whose padding is not "same" (named after
        the node at `path`: the conv, or a Shared node calling it again)."""
        nodes = self.members(target)
        if padding_mode(node.padding) == "same" or all(_same_equivalent(n) for n in nodes):
            return x
        pad = self.e(target, "padding")
        if pad == "0":
            return x
        pad = _keras_pad(pad, padding_mode(node.padding) == "asym")
        self.emit(f"{out} = ", call("layers.ZeroPadding2D", pad, name=self.lname(path, "_pad")), f"({x})")
        return out

    def layer(self, path: str, construct, x: str, out: str) -> str:
        """`out = Layer(...)(x)`; a layer a Shared node calls again is kept in a
        variable first."""
        rel = self.t.rel(path)
        if rel in self.emitter.shared_targets.get(self.cls.name, ()):
            var = var_name(path.rsplit(".", 1)[-1] + "_layer", self.locals)
            self.emit(f"{var} = ", construct)
            self.layer_vars[rel] = var
            self.emit(f"{out} = {var}({x})", "")
            return out
        self.emit(f"{out} = ", construct, f"({x})")
        return out

    def batchnorm(self, node: S.BatchNorm, path: str, x: str, out: str) -> str:
        kw = {}
        if self.e(path, "eps") != "0.001":
            kw["epsilon"] = self.e(path, "eps")
        momentum = self.e(path, "momentum")
        try:
            keras_momentum = literal(round(1.0 - ast.literal_eval(momentum), 12))
        except ValueError:
            keras_momentum = f"1 - {momentum}"
        if keras_momentum != "0.99":
            kw["momentum"] = keras_momentum
        if not node.affine:
            kw.update(center="False", scale="False")
        return self.layer(path, call("layers.BatchNormalization", **kw, name=self.lname(path)), x, out)

    def pool(self, node, path: str, x: str, out: str) -> str:
        e = lambda fld: self.e(path, fld)  # noqa: E731
        is_max = isinstance(node, S.MaxPool)
        mode, ceil = pool_mode(node), e("ceil_mode") != "False"
        include = not is_max and e("count_include_pad") != "False"
        stride = {} if e("stride") == e("kernel") else {"strides": e("stride")}
        native = "layers.MaxPooling2D" if is_max else "layers.AveragePooling2D"
        if not ceil and ((mode == "plain" and e("padding") == "0") or (mode == "same" and not include)):
            kw = {"padding": string("same")} if mode == "same" else {}
            return self.layer(path, call(native, e("kernel"), **stride, **kw, name=self.lname(path)), x, out)
        self.emitter.need.add("PaddedPooling2D")
        padding = string("same") if mode == "same" else e("padding")
        kw = {"ceil_mode": "True"} if ceil else {}
        if not is_max and not include:
            kw["count_include_pad"] = "False"
        construct = call("PaddedPooling2D", string("max" if is_max else "avg"), e("kernel"), e("stride"), padding,
                         **kw, name=self.lname(path))
        return self.layer(path, construct, x, out)

    def leaf(self, node: S.Node, path: str, x: str, out: str) -> str:
        e = lambda fld: self.e(path, fld)  # noqa: E731
        name = self.lname(path)
        if isinstance(node, S.Conv2d):
            return self.conv(node, path, x, out)
        if isinstance(node, S.BatchNorm):
            return self.batchnorm(node, path, x, out)
        if isinstance(node, (S.MaxPool, S.AvgPool)):
            return self.pool(node, path, x, out)
        if isinstance(node, S.Dense):
            kw = {} if node.bias else {"use_bias": "False"}
            return self.layer(path, call("layers.Dense", e("out_features"), **kw, name=name), x, out)
        if isinstance(node, S.Activation):
            construct = call("layers.Activation", string(node.kind), name=name)
        elif isinstance(node, S.GlobalAvgPool):
            construct = call("layers.GlobalAveragePooling2D", *(["keepdims=True"] if node.keepdims else []),
                             name=name)
        elif isinstance(node, S.AdaptiveAvgPool):
            self.emitter.need.add("AdaptiveAveragePooling2D")
            construct = call("AdaptiveAveragePooling2D", e("output_size"), name=name)
        elif isinstance(node, S.ZeroPad):
            construct = call("layers.ZeroPadding2D", _keras_pad(e("padding"), True), name=name)
        elif isinstance(node, S.Dropout):
            construct = call("layers.Dropout", e("rate"), name=name)
        elif isinstance(node, S.Flatten):
            if path in self.emitter.chw_flattens:
                self.emit(f"{out} = ", call("layers.Permute", "(3, 1, 2)", name=self.lname(path, "_chw")), f"({x})")
                x = out
            construct = call("layers.Flatten", name=name)
        else:
            raise TypeError(f"no Keras layer for {type(node).__name__}")
        self.emit(f"{out} = ", construct, f"({x})")
        return out

    def shared(self, node: S.Shared, path: str, x: str, out: str) -> str:
        rel = self.t.rel(node.target)
        var = self.layer_vars.get(rel)
        if var is None:
            raise ValueError(f"Keras code generation: {path!r} calls {node.target!r} again before the "
                             f"builder has created that layer (a block holding a shared layer is written "
                             f"inline, but the layer must come first in the walk)")
        target = self.emitter.plan.nodes[node.target]
        if isinstance(target, S.Conv2d):
            x = self.conv_pad(target, node.target, path, x, out)
        self.emit(f"{out} = {var}({x})", "")
        return out

    # ------------------------------------------------------------------ the walk

    def apply(self, node: S.Node, path: str, x: str, out: str) -> str:
        """Emit the statements computing the node at `path` from variable `x`;
        return the variable holding its output (`out`, or `x` for an identity)."""
        t = self.t
        child = t.instance(path)
        if child is not None:
            params = self.emitter.kparams[child.name]
            args = [self.e(path, p) for p in params]
            positional = args if len(args) > KEYWORDS else args[:1]
            keywords = {} if len(args) > KEYWORDS else dict(zip(params[1:], args[1:]))
            self.emit(f"{out} = ", call(self.emitter.fname[child.name], x, *positional, **keywords,
                                        name=self.lname(path)))
            return out
        stage = t.stage(path)
        if stage is not None:
            self.emitter.need.add("stack")
            kw = {"prefix": string(stage.prefix)} if stage.prefix else {}
            if stage.start:
                kw["start"] = str(stage.start)
            self.emit(f"{out} = ", call("stack", x, f"STAGES[{string(t.rel(path))}]", name=self.lname(path), **kw))
            return out
        if isinstance(node, S.Sequential):
            for _, sub_path, sub in kids(node, path):
                x = self.apply(sub, sub_path, x, out)
            return x
        if isinstance(node, S.Parallel):
            outs = [self.apply(sub, sub_path, x, var_name(segment, self.locals))
                    for segment, sub_path, sub in kids(node, path)]
            if len(outs) == 1:
                return outs[0]
            self.emit(f"{out} = ", call(MERGES[node.merge], name=self.lname(path)), f"([{', '.join(outs)}])")
            return out
        if isinstance(node, S.Identity):
            return x
        if isinstance(node, S.Shared):
            return self.shared(node, path, x, out)
        return self.leaf(node, path, x, out)

    def write(self, src: Source) -> None:
        cls, emitter = self.cls, self.emitter
        if self.root:
            self.emit("inputs = ", call("keras.Input", emitter.input_shape_expr()))
            result = self.apply(cls.node, cls.path, "inputs", "x")
            params = [f"{p}={literal(emitter.plan.defaults[p])}" for p in cls.params]
            params.append(f"input_size={literal(emitter.input_size)}")
            src.stmt(f"def {emitter.fname[cls.name]}", brackets("(", params, "):"), 0)
        else:
            result = self.apply(cls.node, cls.path, "x", "x")
            params = ["x"] + emitter.kparams[cls.name] + ["name"]
            src.stmt(f"def {emitter.fname[cls.name]}", brackets("(", params, "):"), 0)
        src.docstring(emitter.function_doc(cls), 4)
        if not self.root and cls.name in emitter.needs_in:
            src.add("in_channels = x.shape[-1]", 4)
        for prefix, expr, suffix in self.body:
            statement(src, prefix, expr, suffix)
        if self.root:
            src.stmt("return ", call("keras.Model", "inputs", result, name=string(emitter.plan.spec.name)), 4)
        else:
            src.add(f"return {result}", 4)
        src.blank(2)


def statement(src: Source, prefix: str, expr, suffix: str, indent: int = 4) -> None:
    """`prefix + expr + suffix` in a function body, where a suffix `(...)` calls the
    layer `expr` builds: as ruff format splits it, at that call's brackets when the
    rest fits on the first line, else inside the layer's own."""
    one = " " * indent + prefix + flat(expr) + suffix
    if len(one) <= WIDTH or not suffix.startswith("("):
        src.stmt(prefix, expr, indent, suffix)
        return
    head = prefix + flat(expr) + "("
    if len(head) + indent <= WIDTH:
        src.add(head, indent)
        src.add(suffix[1:-1], indent + 4)
        src.add(")", indent)
        return
    src.stmt(prefix, expr, indent, suffix)


def _same_equivalent(node: S.Conv2d) -> bool:
    """Zero padding that is Keras's padding="same" at every input size: stride 1 and
    dilation * (kernel - 1) split evenly on both sides of each axis."""
    if node.padding == S.SAME:
        return True
    t, b, l, r = node.padding
    (kh, kw), (dh, dw) = node.kernel, node.dilation
    return node.stride == (1, 1) and (t, b) == (dh * (kh - 1) // 2,) * 2 and (l, r) == (dw * (kw - 1) // 2,) * 2 \
        and dh * (kh - 1) % 2 == 0 and dw * (kw - 1) % 2 == 0


def _keras_pad(expr: str, four: bool) -> str:
    """The spec's padding expression as ZeroPadding2D's argument: an int or (h, w)
    stays; (top, bottom, left, right) becomes ((top, bottom), (left, right))."""
    if not four:
        return expr
    try:
        t, b, l, r = ast.literal_eval(expr)
    except ValueError:
        return f"(({expr}[0], {expr}[1]), ({expr}[2], {expr}[3]))"
    if t == b == l == r:
        return literal(t)
    return literal((t, l)) if (t, l) == (b, r) else literal(((t, b), (l, r)))
