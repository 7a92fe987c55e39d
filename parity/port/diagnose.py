"""What kind of difference a port's first divergent layer shows.

The first mapped layer whose output diverges is examined with the evidence of the
run: its own input in the port (captured) against the reference's input to the
matched node. Each classic porting bug leaves a recognisable trace, and each is
confirmed numerically before it is named, never guessed from attributes alone:

- a shifted stride: the layer's stride differs from the reference node's;
- an asymmetric (or otherwise different) padding: the port's zero-padded conv
  input is the reference input padded by other amounts per side;
- a BatchNorm eps: the input agrees, and BatchNorm with the port's eps on it
  reproduces the port's output;
- a -inf vs zero pad (or another pooling convention) between two mapped layers:
  the reference model with that pool changed reproduces the port's input;
- a missing or an extra activation, concat branches in another order (the
  structural diff names these where the structures show them; where they do not,
  as two concat branches of the same shape, the numbers do): the reference with
  that change reproduces the port's input;
- a channels-last flatten: the port's dense input is the reference feature map
  flattened in H, W, C order.
"""

from __future__ import annotations

import dataclasses
from itertools import chain, permutations
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from refnets import rules, shapes
from refnets import spec as S
from refnets.native import NativeLayer

from ..engine.metrics import compare
from .match import Mapping, RefLayer


@dataclass(frozen=True)
class Diagnosis:
    kind: str  # stride | padding | batchnorm_eps | pool_padding | pool_mode | flatten_order | missing_activation
    #            | extra_activation | concat_order | inside | between
    message: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message}


@dataclass
class Evidence:
    """Everything the run captured, and a way to re-run an edited reference."""

    spec: S.ModelSpec
    x: np.ndarray
    ref_acts: Dict[str, np.ndarray]  # every reference node's output
    user_acts: Dict[str, Tuple[np.ndarray, np.ndarray]]  # port layer -> (input, output)
    mapping: Mapping
    weights: Dict[str, np.ndarray]
    rtol: float
    atol: float
    rerun: Callable[[S.ModelSpec, str], np.ndarray]  # edited spec, node path -> its output

    def __post_init__(self):
        self.sources = S.input_sources(self.spec.root)
        self.nodes = dict(self.spec.walk())
        self.order = [p for p, _ in self.spec.walk()]
        self.infos = shapes.infer(self.spec)

    def padding(self, path: str) -> S.Pad4:
        """The node's padding as numbers ('same' resolved for its input)."""
        return rules.resolve_padding(self.nodes[path], self.infos[path].in_shape[1:])

    def ref_value(self, path: Optional[str]) -> np.ndarray:
        return self.x if path is None else self.ref_acts[path]

    def agrees(self, out: np.ndarray, ref: np.ndarray) -> bool:
        return out.shape == ref.shape and compare(out, ref, self.rtol, self.atol).passed


def _hw(shape) -> str:
    return "x".join(map(str, shape[2:])) if len(shape) == 4 else "x".join(map(str, shape[1:]))


def _add(a: S.Pad4, b: S.Pad4) -> S.Pad4:
    return tuple(i + j for i, j in zip(a, b))  # type: ignore[return-value]


def _zero_pad(x: np.ndarray, pad: S.Pad4) -> np.ndarray:
    t, b, l, r = pad
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))


def _pad_text(pad: S.Pad4) -> str:
    t, b, l, r = pad
    return f"(top {t}, bottom {b}, left {l}, right {r})"


# ------------------------------------------------------------------ shifted stride


def _stride_mismatches(ev: Evidence) -> List[Tuple[RefLayer, NativeLayer]]:
    return [(r, u) for r, u in ev.mapping.pairs
            if r.kind == "conv" and "stride" in u.config and tuple(u.config["stride"]) != tuple(r.node.stride)]


def _stride(ev: Evidence, ref: RefLayer, user: NativeLayer) -> Optional[Diagnosis]:
    """Named when this conv's stride differs and its output size shows it."""
    mismatches = _stride_mismatches(ev)
    if not any(r.path == ref.path for r, _ in mismatches):
        return None
    ref_out, user_out = ev.ref_acts[ref.path], ev.user_acts[user.name][1]
    if ref_out.shape[2:] == user_out.shape[2:]:
        return None
    shown = "; ".join(f"'{u.name}' = '{r.path}': port {u.config['stride'][0]}, reference {r.node.stride[0]}"
                      for r, u in mismatches[:6])
    more = f"; and {len(mismatches) - 6} more" if len(mismatches) > 6 else ""
    return Diagnosis("stride", f"a shifted stride: this conv has stride {user.config['stride'][0]} where the reference "
                               f"has {ref.node.stride[0]}, so it outputs {_hw(user_out.shape)} where the reference "
                               f"outputs {_hw(ref_out.shape)}. The strides differ at {len(mismatches)} convs: "
                               f"{shown}{more}.")


# ----------------------------------------------------------------------- padding


def _unpadded_source(ev: Evidence, path: str) -> Tuple[Optional[str], S.Pad4]:
    """The node feeding `path` before any ZeroPad nodes, and the zero padding they add."""
    total: S.Pad4 = (0, 0, 0, 0)
    source = ev.sources[path]
    while source is not None and isinstance(ev.nodes[source], S.ZeroPad):
        total = _add(total, ev.nodes[source].padding)
        source = ev.sources[source]
    return source, total


def _find_padding(padded: np.ndarray, inner: np.ndarray, ev: Evidence) -> Optional[S.Pad4]:
    """The per-side zero padding that turns `inner` into `padded`, if there is one."""
    if padded.shape[:2] != inner.shape[:2]:
        return None
    (h, w), (hp, wp) = inner.shape[2:], padded.shape[2:]
    for t in range(max(hp - h + 1, 0)):
        for l in range(max(wp - w + 1, 0)):
            if not ev.agrees(padded[:, :, t:t + h, l:l + w], inner):
                continue
            border = padded.copy()
            border[:, :, t:t + h, l:l + w] = 0
            if not np.any(border):
                return (t, hp - h - t, l, wp - w - l)
    return None


def _conv_input(ev: Evidence, ref: RefLayer, user: NativeLayer, user_in: np.ndarray):
    """True if the port's conv sees the reference's padded input, a padding
    Diagnosis if it sees the same input padded otherwise, else False."""
    source, zero_pads = _unpadded_source(ev, ref.path)
    inner = ev.ref_value(source)
    ref_pad = _add(zero_pads, ev.padding(ref.path))
    user_padded = _zero_pad(user_in, tuple(user.config.get("padding", (0, 0, 0, 0))))
    if ev.agrees(user_padded, _zero_pad(inner, ref_pad)):
        return True
    found = _find_padding(user_padded, inner, ev)
    if found is None or found == ref_pad:
        return False
    kind = "an asymmetric padding" if (found[0] != found[1] or found[2] != found[3]) else "a different padding"
    hint = " (TensorFlow's 'same' for a strided conv)" if found[0] < found[1] or found[2] < found[3] else ""
    return Diagnosis("padding", f"{kind}: the port pads this conv's input {_pad_text(found)}{hint} where the "
                                f"reference pads {_pad_text(ref_pad)}.")


# --------------------------------------------------------------------- BatchNorm


def _batchnorm(ev: Evidence, ref: RefLayer, user: NativeLayer, user_in, user_out) -> Optional[Diagnosis]:
    eps = user.config.get("eps")
    if eps is None or np.isclose(eps, ref.node.eps, rtol=1e-12, atol=0):
        return None
    w = {k: ev.weights[f"{ref.path}.{k}"].astype(np.float64) for k in ref.params}
    shape = (1, -1) + (1,) * (user_in.ndim - 2)
    gamma = w.get("weight", np.ones_like(w["running_mean"]))
    beta = w.get("bias", np.zeros_like(w["running_mean"]))
    scale = gamma / np.sqrt(w["running_var"] + eps)
    expected = (user_in - w["running_mean"].reshape(shape)) * scale.reshape(shape) + beta.reshape(shape)
    if not ev.agrees(user_out, expected.astype(user_out.dtype)):
        return None
    return Diagnosis("batchnorm_eps", f"a BatchNorm eps: the port uses eps={eps:g} where the reference uses "
                                      f"eps={ref.node.eps:g}; BatchNorm with eps={eps:g} reproduces the port's output.")


# ------------------------------------------------------ between two mapped layers


def _flatten_order(ev: Evidence, ref: RefLayer, user_in: np.ndarray) -> Optional[Diagnosis]:
    source = ev.sources[ref.path]
    if source is None or not isinstance(ev.nodes[source], S.Flatten):
        return None
    fmap = ev.ref_value(ev.sources[source])
    if fmap.ndim != 4 or not ev.agrees(user_in, fmap.transpose(0, 2, 3, 1).reshape(fmap.shape[0], -1)):
        return None
    c, h, w = fmap.shape[1:]
    return Diagnosis("flatten_order", f"a channels-last flatten: the port flattens the {c}x{h}x{w} feature map in "
                                      f"H, W, C order where the reference flattens C, H, W; flatten channels-first, "
                                      f"or permute this dense layer's input columns when converting weights.")


def _pool_edits(ev: Evidence, path: str):
    """(kind, description, edited spec) for each other pooling convention at `path`."""
    node, source = ev.nodes[path], ev.sources[path]
    root = ev.spec.root
    if isinstance(node, S.MaxPool) and source is not None and isinstance(ev.nodes[source], S.ZeroPad):
        pad = ev.nodes[source].padding
        edited = S.replace(S.replace(root, source, lambda n: S.Identity(name=n.name)), path,
                           lambda n: dataclasses.replace(n, padding=_add(ev.padding(path), pad)))
        yield ("pool_padding", f"a -inf vs zero pad: the port's max pool (reference '{path}') pads with -inf "
                               f"(a pool's own padding) where the reference zero-pads first ('{source}', "
                               f"{_pad_text(pad)}), so a window of negative values and padding gives 0 in the "
                               f"reference", edited)
    padding = ev.padding(path) if isinstance(node, (S.MaxPool, S.AvgPool)) else None
    if isinstance(node, S.MaxPool) and any(padding):
        edited = S.replace(root, path, lambda n: S.Sequential(name=n.name, children=(
            S.ZeroPad(name="pad", padding=padding), dataclasses.replace(n, name="pool", padding=(0, 0, 0, 0)))))
        yield ("pool_padding", f"a zero vs -inf pad: the port zero-pads before the max pool (reference '{path}') "
                               f"where the reference's pool pads with -inf {_pad_text(padding)}", edited)
    if isinstance(node, (S.MaxPool, S.AvgPool)):
        flipped = dataclasses.replace(node, ceil_mode=not node.ceil_mode)
        yield ("pool_mode", f"a pooling ceil_mode: the port's pool (reference '{path}') uses "
                            f"ceil_mode={flipped.ceil_mode} where the reference uses {node.ceil_mode}",
               S.replace(root, path, lambda n: flipped))
    if isinstance(node, S.AvgPool) and any(padding):
        flipped = dataclasses.replace(node, count_include_pad=not node.count_include_pad)
        yield ("pool_mode", f"an average pool's count_include_pad: the port's pool (reference '{path}') uses "
                            f"{flipped.count_include_pad} where the reference uses {node.count_include_pad}",
               S.replace(root, path, lambda n: flipped))


def _structure_edits(ev: Evidence, path: str):
    """(kind, description, edited spec) for the structural slips of a port at
    `path`: an activation left out or added, concat branches in another order."""
    node, root = ev.nodes[path], ev.spec.root
    if isinstance(node, S.Activation):
        yield ("missing_activation", f"a missing activation: the port has no {node.kind} where the reference runs "
                                     f"'{path}'", S.replace(root, path, lambda n: S.Identity(name=n.name)))
    elif path and not isinstance(node, (S.Activation, S.Identity, S.Dropout)):
        for kind in ("relu", "sigmoid", "tanh"):
            edited = S.replace(root, path, lambda n, k=kind: S.Sequential(name=n.name, children=(
                dataclasses.replace(n, name="node"), S.Activation(name="extra", kind=k))))
            yield ("extra_activation", f"an extra activation: the port applies a {kind} after what the reference "
                                       f"runs as '{path}'", edited)
    if isinstance(node, S.Parallel) and node.merge == "concat" and 1 < len(node.branches) <= 4:
        for order in permutations(range(len(node.branches))):
            if order != tuple(range(len(node.branches))):
                edited = S.replace(root, path, lambda n, o=order: dataclasses.replace(
                    n, branches=tuple(n.branches[i] for i in o)))
                yield ("concat_order", f"a concat order: the port concatenates the branches of '{path}' in the "
                                       f"order {', '.join(map(str, order))}", edited)


def _between(ev: Evidence, ref: RefLayer) -> List[str]:
    """Reference nodes run after the previous mapped node and up to `ref`."""
    mapped = {r.path for r, _ in ev.mapping.pairs}
    end = ev.order.index(ref.path)
    start = max((i for i, p in enumerate(ev.order[:end]) if p in mapped), default=-1)
    return [p for p in ev.order[start + 1:end] if p]


def _pool_convention(ev: Evidence, ref: RefLayer, user_in: np.ndarray, suspects: List[str]) -> Optional[Diagnosis]:
    source = ev.sources[ref.path]
    if source is None:
        return None
    for path in suspects:
        for kind, message, edited in chain(_pool_edits(ev, path), _structure_edits(ev, path)):
            try:
                candidate = ev.rerun(S.ModelSpec(name=ev.spec.name, root=edited, input_shape=ev.spec.input_shape),
                                     source)
            except (ValueError, KeyError):  # the edit does not fit this input: not this bug
                continue
            if ev.agrees(user_in, candidate):
                return Diagnosis(kind, f"{message}. The reference with that change reproduces the port's input "
                                       f"to this layer.")
    return None


def _describe_between(ev: Evidence, ref: RefLayer, user_in: np.ndarray, suspects: List[str]) -> Diagnosis:
    ref_in = ev.ref_value(ev.sources[ref.path])
    shape = (f" (port {_hw(user_in.shape)}, reference {_hw(ref_in.shape)})" if user_in.shape != ref_in.shape else "")
    steps = ", ".join(f"'{p}' ({type(ev.nodes[p]).__name__})" for p in suspects) or "nothing"
    return Diagnosis("between", f"this layer's input already differs{shape}, while every mapped layer before it "
                                f"agrees: the fault is in the port's code between them, where the reference runs "
                                f"{steps}.")


# -------------------------------------------------------------------------- entry


def input_agrees(ev: Evidence, ref: RefLayer, user: NativeLayer) -> bool:
    """Does the port layer see the input the reference node sees (a conv's input
    compared after each side's own zero padding)?"""
    user_in = ev.user_acts[user.name][0]
    if ref.kind == "conv":
        return _conv_input(ev, ref, user, user_in) is True
    return ev.agrees(user_in, ev.ref_value(ev.sources[ref.path]))


def diagnose(ev: Evidence, ref: RefLayer, user: NativeLayer) -> Diagnosis:
    """The kind of difference at the first divergent mapped pair (`ref`, `user`)."""
    user_in, user_out = ev.user_acts[user.name]
    if ref.kind == "conv":
        found = _stride(ev, ref, user)
        if found:
            return found
        seen = _conv_input(ev, ref, user, user_in)
        if isinstance(seen, Diagnosis):
            return seen
    if input_agrees(ev, ref, user):
        found = _batchnorm(ev, ref, user, user_in, user_out) if ref.kind == "batchnorm" else None
        return found or Diagnosis("inside", "its input agrees with the reference's, so the fault is inside this layer "
                                            "(its configuration or arithmetic), not in the weights we mapped.")
    suspects = _between(ev, ref)
    found = _flatten_order(ev, ref, user_in) if ref.kind == "dense" else None
    return found or _pool_convention(ev, ref, user_in, suspects) or _describe_between(ev, ref, user_in, suspects)
