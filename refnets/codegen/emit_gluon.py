"""Plan -> MXNet Gluon source: the PyTorch writer's walk (`emit_torch.ClassWriter`)
with Gluon's names: `nn.HybridBlock` classes with `hybrid_forward(self, F, x)`,
children registered under the spec's segment names (attributes, `setattr` for
names that are no identifiers, `Blocks` for containers), and Gluon's layers.

Gluon cannot work out a size-dependent padding inside a hybridized graph, so a
'same' padding and a ceil-mode pool's overhang are resolved for the spec's input
size at generation time (as refnets' mxnet backend resolves them at build time).

This module imports no framework.
"""

from __future__ import annotations

import ast

from .. import rules, shapes
from .. import spec as S
from .emit_torch import ClassWriter
from .leaves import padding_mode, pool_mode, square
from .writer import call, literal, string

ACTIVATION_CALLS = {"relu": "F.relu({})", "sigmoid": "F.sigmoid({})", "tanh": "F.tanh({})",
                    "softmax": "F.softmax({}, axis=1)"}


class GluonClassWriter(ClassWriter):
    BASE, FORWARD = "nn.HybridBlock", "hybrid_forward(self, F, x)"
    SEQUENTIAL, DICT, ADD = "Blocks", "Blocks", "add"
    ACTIVATION_CALLS = ACTIVATION_CALLS
    FLATTEN, MEAN, MEAN_KEEP = "F.flatten({})", "F.mean({}, axis=(2, 3))", "F.mean({}, axis=(2, 3), keepdims=True)"
    CONCAT = "F.concat({}, dim=1)"

    def add_child(self, segment: str, expr):
        return call("setattr", "self", string(segment), expr)

    def resolved(self, path: str, what) -> object:
        """`what(node, in_hw)` for every instance of this class: one value, or an
        error when the instances' input sizes make them differ."""
        nodes, infos = self.emitter.plan.nodes, self.emitter.plan.infos
        tail = path[len(self.cls.path):] if self.cls.path else ("." + path if path else "")
        paths = [(m + tail).lstrip(".") for m in self.cls.members]
        values = {what(nodes[p], infos[p].in_shape[1:]) for p in paths}
        if len(values) != 1:
            raise ValueError(f"Gluon code generation: {path!r} needs a padding that differs between "
                                      f"the instances of its block ({sorted(values)})")
        return values.pop()

    def leaf(self, node: S.Node, path: str):
        e = lambda fld: self.t.expr(path, fld)  # noqa: E731
        need = self.emitter.need
        if isinstance(node, S.Conv2d):
            return self.conv(node, path)
        if isinstance(node, S.Dense):
            return call("nn.Dense", e("out_features"), **({} if node.bias else {"use_bias": "False"}),
                        in_units=e("in_features"))
        if isinstance(node, S.BatchNorm):
            kw = {} if e("eps") == "1e-05" else {"epsilon": e("eps")}
            try:
                momentum = literal(round(1.0 - ast.literal_eval(e("momentum")), 12))
            except ValueError:
                momentum = f"1 - {e('momentum')}"
            if momentum != "0.9":
                kw["momentum"] = momentum
            if not node.affine:
                kw.update(center="False", scale="False")
            return call("nn.BatchNorm", **kw, in_channels=e("num_features"))
        if isinstance(node, (S.MaxPool, S.AvgPool)):
            return self.pool(node, path)
        if isinstance(node, S.Activation):
            if node.kind == "softmax":
                need.add("Softmax")
                return "Softmax()"
            return call("nn.Activation", string(node.kind))
        if isinstance(node, S.GlobalAvgPool):
            if node.keepdims:
                return "nn.GlobalAvgPool2D()"
            need.add("GlobalAvgPool")
            return "GlobalAvgPool()"
        if isinstance(node, S.AdaptiveAvgPool):
            need.add("AdaptiveAvgPool2D")
            return call("AdaptiveAvgPool2D", e("output_size"))
        if isinstance(node, S.ZeroPad):
            need.add("ZeroPad2D")
            return call("ZeroPad2D", e("padding"))
        if isinstance(node, S.Dropout):
            return call("nn.Dropout", e("rate"))
        if isinstance(node, S.Flatten):
            return "nn.Flatten()"
        if isinstance(node, S.Identity):
            need.add("Identity")
            return "Identity()"
        raise TypeError(f"no Gluon block for {type(node).__name__}")

    def conv(self, node: S.Conv2d, path: str):
        e = lambda fld: self.t.expr(path, fld)  # noqa: E731
        if padding_mode(node.padding) == "same":
            pad4 = self.resolved(path, lambda n, hw: tuple(rules.with_resolved_padding(n, hw).padding))
            mode = padding_mode(pad4)
            padding = literal(pad4 if mode == "asym" else square((pad4[0], pad4[2])))
            padding = "0" if padding == "(0, 0)" or padding == "0" else padding
        else:
            padding, mode = (e("padding"), padding_mode(node.padding))
        kw = {k: e(f) for k, f in (("strides", "stride"), ("dilation", "dilation"), ("groups", "groups"))
              if e(f) != "1"}
        if not node.bias:
            kw["use_bias"] = "False"
        kw["in_channels"] = e("in_channels")
        if mode == "asym":
            self.emitter.need.add("PaddedConv2D")
            return call("PaddedConv2D", e("out_channels"), e("kernel"), side_padding=padding, **kw)
        if padding != "0":
            kw = {**({"strides": kw.pop("strides")} if "strides" in kw else {}), "padding": padding, **kw}
        return call("nn.Conv2D", e("out_channels"), e("kernel"), **kw)

    def pool(self, node, path: str):
        e = lambda fld: self.t.expr(path, fld)  # noqa: E731
        is_max = isinstance(node, S.MaxPool)
        if pool_mode(node) == "plain" and e("ceil_mode") == "False":
            kw = {"padding": e("padding")} if e("padding") != "0" else {}
            if not is_max and e("count_include_pad") == "False":
                kw["count_include_pad"] = "False"
            return call("nn.MaxPool2D" if is_max else "nn.AvgPool2D", e("kernel"), e("stride"), **kw)
        self.emitter.need.add("PaddedPool2D")

        def sizes(n, hw):
            n = rules.with_resolved_padding(n, hw)
            window = shapes.pool_window_padding(n, hw)
            return tuple(n.padding), (window[1] - n.padding[1], window[3] - n.padding[3])

        padding, overhang = self.resolved(path, sizes)
        kw = {"overhang": literal(overhang)} if any(overhang) else {}
        if not is_max and not node.count_include_pad:
            kw["count_include_pad"] = "False"
        return call("PaddedPool2D", string("max" if is_max else "avg"), e("kernel"), e("stride"), literal(padding),
                    **kw)
