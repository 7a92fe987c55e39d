"""A per-node table of a model: path, type, output shape, parameters, MACs."""

from __future__ import annotations

import math
from typing import List

from . import shapes
from . import spec as S


def _fmt_shape(shape) -> str:
    return "x".join(str(v) for v in shape)


def summary(model: S.ModelSpec, input_shape=None, containers: bool = False) -> str:
    """The summary as text. Leaves only unless `containers`."""
    infos = shapes.infer(model, input_shape)
    rows: List[tuple] = []
    for path, info in infos.items():
        if isinstance(info.node, S.CONTAINERS) and not containers:
            continue
        params = sum(math.prod(s) for s in shapes.node_param_shapes(info).values())
        rows.append((path or "<model>", type(info.node).__name__, _fmt_shape(info.out_shape),
                     f"{params:,}", f"{shapes.node_macs(info):,}"))
    header = ("node", "type", "output", "params", "MACs")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    total = shapes.counts(model, input_shape)
    shape = _fmt_shape(input_shape or model.input_shape)
    out = [f"{model.name}  input {shape}", line(header), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    out.append(f"trainable params: {total.trainable:,}   total params (incl. BatchNorm statistics): "
               f"{total.total:,}   MACs: {total.macs:,}")
    out += torchsummary_lines(model, input_shape)
    return "\n".join(out)


def torchsummary_lines(model: S.ModelSpec, input_shape=None) -> List[str]:
    """The three count lines torchsummary prints (see `shapes.torchsummary_counts`)."""
    ts = shapes.torchsummary_counts(model, input_shape)
    return ["as torchsummary counts (parameters only, once per call of a layer):",
            f"Total params: {ts.total:,}", f"Trainable params: {ts.trainable:,}",
            f"Non-trainable params: {ts.non_trainable:,}"]
