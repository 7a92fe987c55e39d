"""The numerical kernels of the numpy reference, one forward/backward pair per
operation, on channels-first batches: a feature map is (N, C, H, W), a vector
batch (N, F).

Every forward returns `(y, cache)`; the matching backward takes `(cache, dy)` and
returns `dx` (and, for a layer with parameters, a dict of parameter gradients).
Arrays keep the dtype they come in (float32 stays float32); only index and
window bookkeeping is plain Python.

Geometry (output sizes, ceil-mode overhang, divisors, adaptive windows) comes
from `refnets.shapes`; nothing here re-derives it.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

# ------------------------------------------------------------------ windows


def pad(x: np.ndarray, padding, value=0.0) -> np.ndarray:
    """x (N, C, H, W) padded by (top, bottom, left, right) with `value`."""
    t, b, l, r = padding
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def crop(x: np.ndarray, padding) -> np.ndarray:
    """The inverse of `pad`: drops (top, bottom, left, right) rows and columns."""
    t, b, l, r = padding
    h, w = x.shape[2:]
    return x[:, :, t:h - b, l:w - r]


def windows(xp: np.ndarray, kernel, stride, out_hw, dilation=(1, 1)) -> np.ndarray:
    """A read-only strided view (N, C, oh, ow, kh, kw) of a padded input:
    windows[n, c, i, j, p, q] = xp[n, c, i*sh + p*dh, j*sw + q*dw]."""
    n, c = xp.shape[:2]
    sn, sc, sy, sx = xp.strides
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    return as_strided(xp, (n, c, oh, ow, kh, kw), (sn, sc, sy * sh, sx * sw, sy * dh, sx * dw),
                      writeable=False)


def unwindow(dwin: np.ndarray, padded_hw, stride, dilation=(1, 1)) -> np.ndarray:
    """The adjoint of `windows`: every window element's gradient added back to
    the input position it was read from. dwin (N, C, oh, ow, kh, kw) -> (N, C, Hp, Wp)."""
    n, c, oh, ow, kh, kw = dwin.shape
    (sh, sw), (dh, dw) = stride, dilation
    out = np.zeros((n, c) + tuple(padded_hw), dtype=dwin.dtype)
    for p in range(kh):
        for q in range(kw):
            out[:, :, p * dh:p * dh + sh * (oh - 1) + 1:sh, q * dw:q * dw + sw * (ow - 1) + 1:sw] += dwin[..., p, q]
    return out


# ----------------------------------------------------------------- conv, dense


def conv2d(x, weight, bias, stride, padding, dilation, groups, out_hw):
    """y[n, o, i, j] = bias[o] + sum_{c in group(o), p, q}
    weight[o, c, p, q] * xpad[n, c, i*sh + p*dh, j*sw + q*dw] (zero padding)."""
    xp = pad(x, padding)
    cols = windows(xp, weight.shape[2:], stride, out_hw, dilation)
    o, cg = weight.shape[:2]
    og = o // groups
    parts = [np.tensordot(cols[:, g * cg:(g + 1) * cg], weight[g * og:(g + 1) * og], axes=([1, 4, 5], [1, 2, 3]))
             for g in range(groups)]  # each (N, oh, ow, og)
    y = np.concatenate(parts, axis=3).transpose(0, 3, 1, 2)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(y), (cols, xp.shape[2:], weight, stride, padding, dilation, groups)


def conv2d_backward(cache, dy):
    """dW[o, c, p, q] = sum_{n,i,j} dy[n, o, i, j] * window[n, c, i, j, p, q];
    dx = crop(unwindow(sum_o dy * W)); db = sum of dy over n, i, j."""
    cols, padded_hw, weight, stride, padding, dilation, groups = cache
    o, cg = weight.shape[:2]
    og = o // groups
    dw_parts, dcol_parts = [], []
    for g in range(groups):
        dy_g = dy[:, g * og:(g + 1) * og]
        dw_parts.append(np.tensordot(dy_g, cols[:, g * cg:(g + 1) * cg], axes=([0, 2, 3], [0, 2, 3])))
        dcols = np.tensordot(dy_g, weight[g * og:(g + 1) * og], axes=([1], [0]))  # (N, oh, ow, cg, kh, kw)
        dcol_parts.append(dcols.transpose(0, 3, 1, 2, 4, 5))
    dx = crop(unwindow(np.concatenate(dcol_parts, axis=1), padded_hw, stride, dilation), padding)
    grads = {"weight": np.concatenate(dw_parts, axis=0), "bias": dy.sum(axis=(0, 2, 3))}
    return dx, grads


def dense(x, weight, bias):
    """y = x @ weight.T + bias, weight (out, in)."""
    y = x @ weight.T
    if bias is not None:
        y = y + bias
    return y, (x, weight)


def dense_backward(cache, dy):
    """dx = dy @ W; dW = dy.T @ x; db = sum_n dy."""
    x, weight = cache
    return dy @ weight, {"weight": dy.T @ x, "bias": dy.sum(axis=0)}


# ------------------------------------------------------------------ batchnorm


def _channel_axes(x) -> Tuple[int, ...]:
    """Every axis but the channel axis 1: (0, 2, 3) for maps, (0,) for vectors."""
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    """A (C,) vector shaped to broadcast against x along axis 1."""
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def batchnorm(x, weight, bias, running_mean, running_var, eps, train):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, with the running
    statistics (inference) or the batch mean and biased batch variance over
    every axis but the channels (training). weight/bias None: 1 and 0."""
    axes = _channel_axes(x)
    n = x.size // x.shape[1]
    if train and n < 2:
        raise ValueError(f"BatchNorm in training mode needs more than one value per channel, got input {x.shape}")
    if train:
        mean = x.mean(axis=axes)
        var = np.square(x - _per_channel(mean, x)).mean(axis=axes)
    else:
        mean, var = running_mean, running_var
    inv = (1.0 / np.sqrt(var + x.dtype.type(eps))).astype(x.dtype)
    xhat = (x - _per_channel(mean, x)) * _per_channel(inv, x)
    y = xhat
    if weight is not None:
        y = xhat * _per_channel(weight, x) + _per_channel(bias, x)
    return y, (xhat, inv, weight, train, mean, var, n)


def batchnorm_backward(cache, dy):
    """dW = sum dy*xhat, db = sum dy. Inference: dx = dy*W*inv. Training (the
    batch statistics depend on x): dx = inv * (g - mean(g) - xhat*mean(g*xhat)),
    g = dy*W, means over every axis but the channels."""
    xhat, inv, weight, train, _, _, _ = cache
    axes = _channel_axes(dy)
    g = dy if weight is None else dy * _per_channel(weight, dy)
    if train:
        g = g - _per_channel(g.mean(axis=axes), dy) - xhat * _per_channel((g * xhat).mean(axis=axes), dy)
    dx = g * _per_channel(inv, dy)
    grads = {} if weight is None else {"weight": (dy * xhat).sum(axis=axes), "bias": dy.sum(axis=axes)}
    return dx, grads


def batch_statistics(cache) -> Tuple[np.ndarray, np.ndarray, int]:
    """(batch mean, biased batch variance, values per channel) of a training-mode forward."""
    _, _, _, _, mean, var, n = cache
    return mean, var, n


# ---------------------------------------------------------------- activations


def activation(x, kind):
    """relu max(x, 0); sigmoid 1 / (1 + exp(-x)); tanh; softmax over axis 1 (the
    channels of a map, the features of a vector), computed from x - max."""
    if kind == "relu":
        y = np.maximum(x, 0)
    elif kind == "sigmoid":
        with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x gives 0, correctly
            y = 1 / (1 + np.exp(-x))
    elif kind == "tanh":
        y = np.tanh(x)
    elif kind == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"unknown activation {kind!r}")
    return y, (kind, x, y)


def activation_backward(cache, dy):
    """relu: dy where x > 0 (0 at x = 0, as the frameworks); sigmoid: dy*y*(1-y); tanh: dy*(1-y^2);
    softmax: y * (dy - sum over axis 1 of dy*y)."""
    kind, x, y = cache
    if kind == "relu":
        return dy * (x > 0)
    if kind == "sigmoid":
        return dy * y * (1 - y)
    if kind == "softmax":
        return y * (dy - (dy * y).sum(axis=1, keepdims=True))
    return dy * (1 - y * y)


# ------------------------------------------------------------------- pooling


def max_pool(x, kernel, stride, window_padding, out_hw):
    """y[n, c, i, j] = max over the window of the input padded with -inf
    (`window_padding`: the pool's own padding plus the ceil-mode overhang)."""
    xp = pad(x, window_padding, value=-np.inf)
    win = windows(xp, kernel, stride, out_hw)
    flat = win.reshape(win.shape[:4] + (-1,))
    arg = flat.argmax(axis=-1)  # the first maximum in row-major window order, as PyTorch
    y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return y, (arg, kernel, stride, window_padding, xp.shape[2:])


def max_pool_backward(cache, dy):
    """The whole gradient of an output goes to its window's (first) maximum."""
    arg, (kh, kw), stride, window_padding, padded_hw = cache
    dwin = np.zeros(dy.shape + (kh * kw,), dtype=dy.dtype)
    np.put_along_axis(dwin, arg[..., None], dy[..., None], axis=-1)
    return crop(unwindow(dwin.reshape(dy.shape + (kh, kw)), padded_hw, stride), window_padding)


def avg_pool(x, kernel, stride, window_padding, out_hw, divisors):
    """y = (sum over the zero-padded window) / divisor[i, j]; `divisors`
    (oh, ow) is `shapes.avgpool_divisors` (PyTorch's rule), in x's dtype."""
    xp = pad(x, window_padding)
    y = windows(xp, kernel, stride, out_hw).sum(axis=(4, 5)) / divisors
    return y, (kernel, stride, window_padding, xp.shape[2:], divisors)


def avg_pool_backward(cache, dy):
    """Each window element receives dy / divisor."""
    (kh, kw), stride, window_padding, padded_hw, divisors = cache
    share = dy / divisors
    dwin = np.broadcast_to(share[..., None, None], share.shape + (kh, kw))
    return crop(unwindow(dwin, padded_hw, stride), window_padding)


def global_avg_pool(x, keepdims=False):
    """y[n, c] (or y[n, c, 0, 0] with `keepdims`) = mean over h, w of x[n, c]."""
    return x.mean(axis=(2, 3), keepdims=keepdims), x.shape


def global_avg_pool_backward(shape, dy):
    """dx[n, c, h, w] = dy[n, c] / (H*W)."""
    h, w = shape[2:]
    dy = dy.reshape(shape[:2])
    return np.broadcast_to((dy / (h * w))[:, :, None, None], shape).copy()


def adaptive_avg_pool(x, rows, cols):
    """y[n, c, i, j] = mean of x[n, c, r0:r1, c0:c1] for the i-th row window and
    j-th column window (`shapes.adaptive_windows`, PyTorch's)."""
    y = np.empty(x.shape[:2] + (len(rows), len(cols)), dtype=x.dtype)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            y[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return y, (x.shape, rows, cols)


def adaptive_avg_pool_backward(cache, dy):
    """Each cell of window (i, j) receives dy[..., i, j] / window size (windows may overlap)."""
    shape, rows, cols = cache
    dx = np.zeros(shape, dtype=dy.dtype)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            dx[:, :, r0:r1, c0:c1] += (dy[:, :, i, j] / ((r1 - r0) * (c1 - c0)))[:, :, None, None]
    return dx


# ---------------------------------------------------------------------- loss


def cross_entropy(logits, labels) -> Tuple[float, np.ndarray]:
    """Mean softmax cross-entropy over the batch, and its gradient with respect
    to the logits: (softmax(logits) - onehot(labels)) / N."""
    n = logits.shape[0]
    labels = np.asarray(labels, dtype=np.int64)
    z = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(z).sum(axis=1))
    loss = (log_sum - z[np.arange(n), labels]).mean()
    grad = np.exp(z - log_sum[:, None])
    grad[np.arange(n), labels] -= 1
    return float(loss), (grad / n).astype(logits.dtype)

