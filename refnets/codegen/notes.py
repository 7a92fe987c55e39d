"""The framework-sensitive choices of a model, as docstring bullets: BatchNorm eps
and momentum, the padding rules, where the strides sit, zero pad versus pool
padding, ceil mode and the average-pool divisor, flatten order, adaptive pool windows, softmax.
Facts come from the spec; `phrases` words them for one framework.

This module imports no framework.
"""

from __future__ import annotations

from typing import Dict, List

from .. import spec as S
from .leaves import padding_mode, square
from .plan import Plan


def _fmt(value) -> str:
    value = square(value)
    return str(value) if isinstance(value, int) else "x".join(map(str, value))


def strides(plan: Plan) -> List[str]:
    """Where the strides sit: per class, the layers whose stride is not 1 (or an argument)."""
    out = []
    for cls in plan.classes:
        spots = []
        for (rel, fld), expr in cls.exprs.items():
            if fld == "stride" and expr != "1":
                node = plan.nodes[(cls.path + "." + rel) if cls.path else rel]
                what = f"{type(node).__name__} {_fmt(node.kernel)}" if hasattr(node, "kernel") else "block"
                spots.append(f"{rel} ({what}, stride {expr})")
        if spots:
            out.append(f"{cls.name}: " + ", ".join(spots))
    return out


def facts(plan: Plan, phrases: Dict[str, str]) -> List[str]:
    nodes = [n for _, n in plan.spec.walk()]
    bullets = []
    bns = [n for n in nodes if isinstance(n, S.BatchNorm)]
    if bns:
        eps = sorted({n.eps for n in bns})
        momentum = sorted({n.momentum for n in bns})
        text = (f"BatchNorm eps {', '.join(map(repr, eps))}; momentum {', '.join(map(repr, momentum))} "
                f"{phrases['momentum']}")
        if any(not n.unbiased_running_var for n in bns):
            text += "; " + phrases["biased"]
        if any(not n.affine for n in bns):
            text += "; " + phrases["affine"]
        bullets.append(text + ".")
    modes = {padding_mode(n.padding) for n in nodes if isinstance(n, S.Conv2d)}
    if modes:
        parts = [phrases[f"conv_{m}"] for m in ("sym", "asym", "same") if m in modes]
        bullets.append("Conv padding: " + "; ".join(parts) + ".")
    where = strides(plan)
    if where:
        bullets.append("Strides sit on: " + "; ".join(where) + ".")
    pools = [n for n in nodes if isinstance(n, (S.MaxPool, S.AvgPool))]
    if any(isinstance(n, S.ZeroPad) for n in nodes):
        bullets.append(phrases["zeropad"])
    if pools:
        text = phrases["pool"]
        if any(n.ceil_mode for n in pools):
            text += " " + phrases["ceil"]
        if any(isinstance(n, S.AvgPool) for n in pools):
            text += " " + phrases["divisor"]
        bullets.append(text)
    if any(isinstance(n, S.Flatten) for n in nodes):
        bullets.append(phrases["flatten"])
    if any(isinstance(n, S.GlobalAvgPool) for n in nodes):
        bullets.append(phrases["gap"])
    if any(isinstance(n, S.AdaptiveAvgPool) for n in nodes):
        bullets.append(phrases["adaptive"])
    if any(isinstance(n, S.Activation) and n.kind == "softmax" for n in nodes):
        bullets.append(phrases["softmax"])
    if any(isinstance(n, S.Shared) for n in nodes):
        bullets.append(phrases["shared"])
    return bullets


def module_doc(plan: Plan, framework: str, phrases: Dict[str, str], usage: str, origin: str) -> str:
    spec = plan.spec
    c, h, w = spec.input_shape
    options = ", ".join(f"{k}={v!r}" for k, v in spec.options) or "none"
    head = (f"{spec.name} in {framework}, generated from the refnets spec by `python -m refnets code "
            f"{origin} --framework {phrases['key']}`. Input {c}x{h}x{w} (channels, height, width); "
            f"options {options}. Parameter names follow the spec's node paths, so canonical weights "
            f"load by name (load_canonical).")
    classes = "\n".join(f"- {cls.name}: {cls.doc}" for cls in plan.classes[:-1])
    text = head + "\n\n" + usage
    if classes:
        text += "\n\nBlocks:\n" + classes
    return text + "\n\nFramework-sensitive choices:\n" + "\n".join(f"- {b}" for b in facts(plan, phrases))
