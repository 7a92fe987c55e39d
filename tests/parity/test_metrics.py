"""compare(): the finiteness and the scale it reports without extra passes are
those of the plain definitions, edge cases included."""

import numpy as np
import pytest

from parity.engine.metrics import BLOCK, compare, compare_whole, in_memory_order


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_and_figures_are_the_plain_definitions(dtype):
    ref = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(dtype)
    out = ref + dtype(1e-3)
    c = compare(out, ref, rtol=1e-5, atol=0.0)
    assert c.ref_scale == float(np.max(np.abs(ref)))
    assert c.max_abs == float(np.max(np.abs(out.astype(np.float64) - ref)))
    assert c.finite and not c.passed


@pytest.mark.parametrize("where, value", [("out", np.nan), ("ref", np.nan), ("out", np.inf), ("ref", -np.inf)])
def test_a_nan_or_infinity_on_either_side_is_not_finite(where, value):
    ref = np.linspace(-1.0, 1.0, 12, dtype=np.float32)
    out = ref.copy()
    (out if where == "out" else ref)[5] = value
    c = compare(out, ref, rtol=1e9, atol=1e9)
    assert not c.finite and not c.passed


def test_finite_values_whose_difference_overflows_are_finite_and_disagree():
    ref = np.array([1e308, -1e308])
    with np.errstate(over="ignore"):
        c = compare(-ref, ref, rtol=1e-5, atol=0.0)
    assert c.finite and not c.passed and c.max_abs == float("inf")


def test_float32_differences_are_the_exact_ones_rounded_once():
    """Taken in float32 for float32 arrays: max|out-ref| is the float64 figure rounded
    to float32, here where the rounding shows (ref tiny beside out)."""
    ref = np.array([1e-9, -3e-8, 2.5e-10] * (BLOCK // 2), np.float32)
    out = ref + np.float32(1.0) + np.arange(ref.size, dtype=np.float32) * np.float32(1e-7)
    exact = float(np.max(np.abs(out.astype(np.float64) - ref)))
    for c in (compare(out, ref, 1e-5, 0.0), compare_whole(out, ref, 1e-5, 0.0, None)):
        assert c.max_abs == float(np.float32(exact)) and c.max_abs != exact
        assert c.max_abs == pytest.approx(exact, rel=2.0 ** -24)
        assert c.mean_abs == pytest.approx(float(np.mean(np.abs(out.astype(np.float64) - ref))), rel=1e-6)


def test_float32_values_whose_float32_difference_overflows_get_the_float64_one():
    ref = np.array([3e38, -3e38], np.float32)
    c = compare(-ref, ref, rtol=1e-5, atol=0.0)
    assert c.finite and not c.passed and c.max_abs == pytest.approx(6e38, rel=1e-6)


def test_negative_zeros_give_a_zero_scale():
    zeros = -np.zeros((2, 3), np.float32)
    c = compare(zeros, zeros, rtol=1e-5, atol=0.0)
    assert c.ref_scale == 0.0 and str(c.ref_scale) == "0.0" and c.passed


def test_scalars_compare_like_arrays():
    """A loss is a 0-d array: its difference is one too, not a numpy scalar."""
    c = compare(np.array(1.5), np.array(1.5 + 1e-9), rtol=1e-6, atol=0.0)
    assert c.passed and c.finite and 0 < c.max_abs < 1e-8


def _large(dtype=np.float32, seed=0):
    """Larger than one block, and not a whole number of blocks."""
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(3 * BLOCK + 17).astype(dtype).reshape(1, -1)
    return ref + dtype(1e-6) * rng.standard_normal(ref.shape).astype(dtype), ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_large_comparison_a_block_at_a_time_gives_the_whole_arrays_figures(dtype):
    out, ref = _large(dtype)
    blocks, whole = compare(out, ref, 1e-5, 0.0), compare_whole(out, ref, 1e-5, 0.0, None)
    assert (blocks.max_abs, blocks.ref_scale, blocks.finite, blocks.passed) == \
           (whole.max_abs, whole.ref_scale, whole.finite, whole.passed)
    assert blocks.mean_abs == pytest.approx(whole.mean_abs, rel=1e-12)


@pytest.mark.parametrize("where, value", [("out", np.nan), ("ref", np.nan), ("out", np.inf), ("ref", -np.inf)])
def test_a_nan_in_any_block_of_a_large_comparison_is_not_finite(where, value):
    out, ref = _large()
    (out if where == "out" else ref)[0, 2 * BLOCK + 5] = value
    c = compare(out, ref, rtol=1e9, atol=1e9)
    assert not c.finite and not c.passed


def test_a_large_strided_view_gives_the_plain_figures():
    out, ref = _large()
    out, ref = out.reshape(-1)[: 3 * BLOCK].reshape(BLOCK, 3).T, ref.reshape(-1)[: 3 * BLOCK].reshape(BLOCK, 3).T
    c = compare(out, ref, 1e-5, 0.0)
    assert c.max_abs == float(np.max(np.abs(out.astype(np.float64) - ref)))
    assert c.ref_scale == float(np.max(np.abs(ref)))


@pytest.mark.parametrize("strided", ["out", "ref"])
def test_both_arrays_are_read_in_the_memory_order_of_a_permuted_one(strided):
    nhwc = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    view, plain = np.transpose(nhwc, (0, 3, 1, 2)), np.ascontiguousarray(np.transpose(nhwc, (0, 3, 1, 2))) + 1
    out, ref = (view, plain) if strided == "out" else (plain, view)
    aligned_out, aligned_ref = in_memory_order(out, ref)
    assert (aligned_out if strided == "out" else aligned_ref).flags.c_contiguous
    assert np.array_equal(aligned_out - aligned_ref, np.transpose(out - ref, (0, 2, 3, 1)))


def test_a_channels_first_view_of_channels_last_data_gives_the_plain_figures():
    """Keras hands over such views (compared whole)."""
    rng = np.random.default_rng(1)
    nhwc = rng.standard_normal((2, 40, 40, 32)).astype(np.float32)
    out = np.transpose(nhwc, (0, 3, 1, 2))
    ref = np.ascontiguousarray(out) + np.float32(1e-6) * rng.standard_normal(out.shape).astype(np.float32)
    blocks, whole = compare(out, ref, 1e-5, 0.0), compare_whole(out, ref, 1e-5, 0.0, None)
    assert (blocks.max_abs, blocks.ref_scale, blocks.passed) == (whole.max_abs, whole.ref_scale, whole.passed)
    assert blocks.mean_abs == pytest.approx(whole.mean_abs, rel=1e-12)


def test_top1_is_taken_per_row_whatever_the_arrays_memory_order():
    """Reading in memory order must not turn a column-major (N, C) output into (C, N)
    for the class agreement: rows agree here, columns would not."""
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.5]], np.float32)
    out = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0]], np.float32)
    for a, b in ((np.asfortranarray(out), ref), (out, np.asfortranarray(ref))):
        assert compare(a, b, 1e-5, 0.0).top1 == 1.0
