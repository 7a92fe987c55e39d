"""How two arrays are compared: the figures every report and verdict use."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Comparison:
    max_abs: float
    max_rel: float  # max|out - ref| / max|ref|
    mean_abs: float
    ref_scale: float  # max|ref|
    finite: bool
    top1: Optional[float]  # fraction of the batch whose arg-max agrees (class outputs only)
    passed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _max_magnitude(ref: np.ndarray, finite: bool) -> float:
    """max|ref| without an |ref| temporary when ref is finite (two passes, no copy)."""
    if not ref.size:
        return 0.0
    if finite:
        return float(max(abs(np.max(ref)), abs(np.min(ref))))
    return float(np.max(np.abs(ref)))


BLOCK = 1 << 15
"""Elements per block of a large comparison: the block's difference (128 or 256 KiB)
stays in the CPU cache through the passes over it, where a whole node's difference
went out to memory and back for each (resnet50v2's node sizes: 4.1 -> 2.8 ns per
element with float64 differences; 1.7-1.8 with float32 ones)."""


def compare(out: np.ndarray, ref: np.ndarray, rtol: float, atol: float, scale: Optional[float] = None) -> Comparison:
    """Pass iff shapes match, everything is finite and max|out-ref| <= atol + rtol*scale,
    where scale is max|ref| unless given (a gradient is judged at the scale of its
    node's largest gradient: see parity.training)."""
    if out.shape != ref.shape:
        return Comparison(float("inf"), float("inf"), float("inf"), float("nan"), False, None, False)
    figures = _blockwise_figures(*in_memory_order(out, ref))
    if figures is None:
        return compare_whole(out, ref, rtol, atol, scale)
    max_abs, mean_abs, ref_max, ref_min = figures
    if scale is None:
        scale = float(max(abs(ref_max), abs(ref_min)))
    return _judged(max_abs, mean_abs, scale, True, _top1(out, ref), rtol, atol)


def difference_dtype(out: np.ndarray, ref: np.ndarray) -> type:
    """The dtype in which out - ref is taken: float32 for two float32 (or smaller
    float) arrays, float64 otherwise. A float32 difference is the exact one rounded
    once (a relative change of at most 2**-24 in max|out-ref|, and max commutes
    with that rounding), and it halves the memory traffic of every pass over it."""
    kind = np.result_type(out, ref)
    return np.float32 if kind in (np.float16, np.float32) else np.float64


def in_memory_order(out: np.ndarray, ref: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Both arrays transposed alike so that whichever is a permuted view of
    contiguous memory (Keras's channels-first view of a channels-last node) is
    read in its memory order: the elementwise figures do not depend on the order
    (the per-row ones, top-1, do: those are taken on the arrays as given),
    and numpy walks a strided operand far faster beside a contiguous one than the
    other way round (a Keras node of resnet50v2's, the whole comparison: 8.2 -> 3.3-3.9
    ns per element with float32 differences, the subtraction alone 5.5 -> 2.3)."""
    for lead in (out, ref):
        if lead.ndim > 1 and not lead.flags.c_contiguous:
            order = np.argsort([-abs(stride) for stride in lead.strides], kind="stable")
            if lead.transpose(order).flags.c_contiguous:
                return out.transpose(order), ref.transpose(order)
    return out, ref


def _judged(max_abs: float, mean_abs: float, scale: float, finite: bool, top1: Optional[float], rtol: float,
            atol: float) -> Comparison:
    """The comparison of these figures: relative error and verdict."""
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return Comparison(max_abs, max_rel, mean_abs, scale, finite, top1, finite and max_abs <= atol + rtol * scale)


def _blockwise_figures(out: np.ndarray, ref: np.ndarray):
    """(max|out-ref|, mean|out-ref|, max ref, min ref), a block at a time, for two
    large C-contiguous arrays whose difference is finite everywhere (then both are
    finite); None otherwise, for `compare_whole`. The sum is taken in float64."""
    if out.size <= BLOCK:
        return None
    if not (out.flags.c_contiguous and ref.flags.c_contiguous):
        return None  # blocks of a strided view (Keras's channels-first views) were slower than numpy's own order
    flat_out, flat_ref = out.reshape(-1), ref.reshape(-1)  # views: both are contiguous
    diff = np.empty(BLOCK, difference_dtype(out, ref))
    maxima, sums, ref_maxima, ref_minima = [], [], [], []
    with np.errstate(over="ignore"):  # an infinite block sends the arrays to compare_whole
        for start in range(0, out.size, BLOCK):
            _block_figures(flat_out[start:start + BLOCK], flat_ref[start:start + BLOCK], diff,
                           (maxima, sums, ref_maxima, ref_minima))
    max_abs = float(np.max(maxima))  # a NaN anywhere stays NaN here (Python's max would drop it)
    if not math.isfinite(max_abs):
        return None
    return max_abs, float(np.sum(sums)) / out.size, float(np.max(ref_maxima)), float(np.min(ref_minima))


def _block_figures(o: np.ndarray, r: np.ndarray, diff: np.ndarray, figures: tuple) -> None:
    """Appends one block's max|o-r|, sum|o-r|, max r and min r to `figures`' lists."""
    maxima, sums, ref_maxima, ref_minima = figures
    d = diff[:o.size]
    np.subtract(o, r, out=d, dtype=d.dtype)
    np.abs(d, out=d)
    maxima.append(d.max())
    sums.append(np.add.reduce(d, dtype=np.float64))
    ref_maxima.append(r.max())
    ref_minima.append(r.min())


def _top1(out: np.ndarray, ref: np.ndarray) -> Optional[float]:
    if out.ndim == 2 and out.shape[1] > 1:
        return float(np.mean(np.argmax(out, axis=1) == np.argmax(ref, axis=1)))
    return None


def compare_whole(out: np.ndarray, ref: np.ndarray, rtol: float, atol: float, scale: Optional[float]) -> Comparison:
    """`compare` over the whole arrays at once: small, strided or non-finite ones."""
    diff = _absolute_difference(out, ref, difference_dtype(out, ref))
    max_abs = float(np.max(diff)) if diff.size else 0.0
    # A NaN or infinity in either array makes the difference NaN or infinite there, so
    # a finite max_abs proves both finite; only otherwise are they searched (a float64
    # overflow of two finite values also lands there).
    finite = math.isfinite(max_abs) or bool(np.all(np.isfinite(out)) and np.all(np.isfinite(ref)))
    if finite and not math.isfinite(max_abs) and diff.dtype != np.float64:
        diff = _absolute_difference(out, ref, np.float64)  # two finite float32 values ~3e38 apart
        max_abs = float(np.max(diff))
    if scale is None:
        scale = _max_magnitude(ref, finite)
    mean_abs = float(np.add.reduce(diff, axis=None, dtype=np.float64)) / diff.size if diff.size else 0.0
    return _judged(max_abs, mean_abs, scale, finite, _top1(out, ref), rtol, atol)


def _absolute_difference(out: np.ndarray, ref: np.ndarray, dtype: type) -> np.ndarray:
    """|out - ref| in `dtype`, read in memory order (`in_memory_order`): the one
    temporary (0-d: an array too)."""
    with np.errstate(over="ignore"):  # an overflow is seen in the figures (see compare_whole)
        diff = np.asarray(np.subtract(*in_memory_order(out, ref), dtype=dtype))
    np.abs(diff, out=diff)
    return diff


MEMO_SIZE = 8


def _memory(array) -> tuple:
    """Where and how an array lies in memory (another object: its identity)."""
    if not isinstance(array, np.ndarray):
        return ("object", id(array))
    interface = array.__array_interface__
    return interface["data"][0], array.shape, array.strides, array.dtype.str


class RecentComparisons:
    """`compare(out, ref)` once per pair of memory regions among the last few
    pairs: a Sequential and its last child hand in the very same array, one right
    after the other. The memo keeps its arrays alive, so a key's memory cannot be
    freed and reused by other values while the key is remembered."""

    def __init__(self, rtol: float, atol: float, size: int = MEMO_SIZE):
        self.rtol, self.atol, self.size = rtol, atol, size
        self.memo: "OrderedDict[tuple, tuple]" = OrderedDict()
        self.lock = threading.Lock()

    def compare(self, out, ref) -> Comparison:
        key = _memory(out) + _memory(ref)
        with self.lock:
            if key in self.memo:
                return self.memo[key][0]
        comparison = compare(out, ref, self.rtol, self.atol)
        with self.lock:
            self.memo[key] = (comparison, out, ref)
            while len(self.memo) > self.size:
                self.memo.popitem(last=False)
        return comparison
