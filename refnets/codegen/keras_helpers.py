"""Source text of the helpers a generated Keras module may need, in sections
("# --- name" markers, as in `torch_helpers`): pools over padding Keras's own
pools cannot take, PyTorch's adaptive average pool, a strided dilated conv
(TensorFlow refuses one), the stage builder and the canonical weight loader.
Already in ruff format style.

This module imports no framework (the text is code for the generated file).
"""

from __future__ import annotations

from typing import Dict

from .shared_source import fill, split_sections

SOURCE = fill(r'''
# --- pair
<<pair>>


# --- same_padding
<<same_padding>>


# --- PaddedPooling2D
<<pool_padding>>


class PaddedPooling2D(layers.Layer):
    """Max or average pool over padding MaxPooling2D / AveragePooling2D cannot take:
    a pool's own padding (int, (h, w) or (top, bottom, left, right)), PyTorch's
    ceil_mode, or TensorFlow's 'same' rule with the padding counted.

    A max pool pads with -inf (padding never wins); an average pool sums over zero
    padding and divides by PyTorch's divisor: with count_include_pad the window's
    cells in the input or the padding (not the ceil-mode overhang), else its cells in
    the input only. 'same' and ceil_mode need the input's height and width.
    """

    def __init__(
        self,
        kind,
        pool_size,
        strides,
        padding,
        ceil_mode=False,
        count_include_pad=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kind, self.pool_size, self.strides = kind, pair(pool_size), pair(strides)
        if isinstance(padding, int) or len(padding) == 2:
            (h, w) = pair(padding)
            padding = (h, h, w, w)
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad = count_include_pad

    def call(self, x):
        (kh, kw), (sh, sw), (h, w) = self.pool_size, self.strides, x.shape[1:3]
        if self.padding == "same":
            top, bottom = same_padding(h, kh, sh)
            left, right = same_padding(w, kw, sw)
        else:
            top, bottom, left, right = self.padding
        bottom2, right2 = bottom, right
        if self.ceil_mode:
            bottom2 = pool_padding(h, kh, sh, top, bottom, True)[1]
            right2 = pool_padding(w, kw, sw, left, right, True)[1]
        pad = [[0, 0], [top, bottom2], [left, right2], [0, 0]]
        if self.kind == "max":
            padded = ops.pad(x, pad, constant_values=float("-inf"))
            return ops.max_pool(padded, self.pool_size, self.strides)
        summed = ops.average_pool(ops.pad(x, pad), self.pool_size, self.strides)
        cells = ops.ones_like(x[..., :1])
        if self.count_include_pad:
            inner = [[0, 0], [top, bottom], [left, right], [0, 0]]
            cells = ops.pad(cells, inner, constant_values=1.0)
            pad = [[0, 0], [0, bottom2 - bottom], [0, right2 - right], [0, 0]]
        divisor = ops.average_pool(ops.pad(cells, pad), self.pool_size, self.strides)
        return summed / divisor


# --- AdaptiveAveragePooling2D
def window_matrix(size, out):
    """(out, size) 0/1 rows: row i marks PyTorch's adaptive window i, input cells
    floor(i * size / out) to ceil((i + 1) * size / out) - 1.
    """
    rows = []
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        rows.append([1.0 if start <= j < end else 0.0 for j in range(size)])
    return rows


class AdaptiveAveragePooling2D(layers.Layer):
    """PyTorch's AdaptiveAvgPool2d: output cell (i, j) averages adaptive window i of
    the rows and j of the columns (they may overlap; upsampling included). Needs the
    input's height and width.
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = pair(output_size)

    def call(self, x):
        (h, w), (oh, ow) = x.shape[1:3], self.output_size
        if (h, w) == (oh, ow):
            return x
        rows = ops.convert_to_tensor(window_matrix(h, oh), dtype=self.compute_dtype)
        cols = ops.convert_to_tensor(window_matrix(w, ow), dtype=self.compute_dtype)
        summed = ops.einsum("ih,nhwc,jw->nijc", rows, x, cols)
        counts = ops.einsum("i,j->ij", ops.sum(rows, 1), ops.sum(cols, 1))
        return summed / counts[None, :, :, None]


# --- StridedDilatedConv2D
class StridedDilatedConv2D(layers.Conv2D):
    """A dilated conv with a stride, which TensorFlow refuses: the stride-1 dilated
    conv, sampled every `subsample` rows and columns (the same windows).
    """

    def __init__(self, *args, subsample=(1, 1), **kwargs):
        super().__init__(*args, **kwargs)
        self.subsample = pair(subsample)

    def convolution_op(self, inputs, kernel):
        sh, sw = self.subsample
        return super().convolution_op(inputs, kernel)[:, ::sh, ::sw, :]

    def compute_output_shape(self, input_shape):
        n, h, w, c = super().compute_output_shape(input_shape)
        sh, sw = self.subsample
        h = None if h is None else -(-h // sh)
        w = None if w is None else -(-w // sw)
        return (n, h, w, c)


# --- stack
def stack(x, plan, name, prefix="", start=0):
    """A stage: for each row (block function, count, arguments) of its plan, `count`
    blocks in a row, named f"{name}.{prefix}{start}", f"{name}.{prefix}{start + 1}", ...
    """
    index = start
    for block, count, *args in plan:
        for _ in range(count):
            x = block(x, *args, name=f"{name}.{prefix}{index}")
            index += 1
    return x


# --- load_canonical
SAFETENSORS_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
# canonical parameter -> Keras variable, per layer type
ROLES = {
    "conv": (("weight", "kernel"), ("bias", "bias")),
    "dense": (("weight", "kernel"), ("bias", "bias")),
    "bn": (
        ("weight", "gamma"),
        ("bias", "beta"),
        ("running_mean", "moving_mean"),
        ("running_var", "moving_variance"),
    ),
}


<<read_safetensors>>


def to_keras(array, kind, layer_name):
    """A canonical array in Keras's layout: conv (out, in, kh, kw) -> (kh, kw, in,
    out); dense (out, in) -> (in, out), where the input is a channels-last Flatten of
    an (h, w, c) map (FLATTENED) its columns go from c, h, w to h, w, c order first.
    """
    if kind == "conv" and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if kind == "dense" and array.ndim == 2:
        if layer_name in FLATTENED:
            h, w, c = FLATTENED[layer_name]
            array = array.reshape(-1, c, h, w).transpose(0, 2, 3, 1)
            array = array.reshape(array.shape[0], -1)
        return array.T
    return array


def parameter_slots(model):
    """Canonical name -> (Keras variable, kind) for every parameter of `model`."""
    slots = {}
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kind = "conv"
        elif isinstance(layer, layers.Dense):
            kind = "dense"
        elif isinstance(layer, layers.BatchNormalization):
            kind = "bn"
        else:
            continue
        for canonical, attribute in ROLES[kind]:
            variable = getattr(layer, attribute, None)
            if variable is not None:
                slots[f"{layer.name}.{canonical}"] = (variable, kind, layer.name)
    return slots


def load_canonical(model, path):
    """Load canonical weights into `model` and return it.

    `path` is a safetensors file of name -> array in refnets' canonical layout: conv
    weights (out, in, kh, kw), dense weights (out, in) with a flattened input in
    channels, height, width order, BatchNorm weight, bias, running_mean and
    running_var. The layer names are the spec's paths, so the name of an array is
    its layer's name and its role; each is converted to Keras's layout (to_keras).
    Every name and shape is checked before anything is set.
    """
    arrays = read_safetensors(path)
    slots = parameter_slots(model)
    converted = {
        k: to_keras(arrays[k], kind, layer)
        for k, (_, kind, layer) in slots.items()
        if k in arrays
    }
    problems = [f"missing {k}" for k in sorted(set(slots) - set(arrays))]
    problems += [f"unexpected {k}" for k in sorted(set(arrays) - set(slots))]
    problems += [
        f"{k}: expected {tuple(slots[k][0].shape)}, got {tuple(v.shape)} (Keras layout)"
        for k, v in converted.items()
        if tuple(v.shape) != tuple(slots[k][0].shape)
    ]
    if problems:
        raise ValueError("weights do not fit the model: " + "; ".join(problems))
    for name, (variable, _, _) in slots.items():
        variable.assign(converted[name].astype(variable.dtype))
    return model
''')

REQUIRES = {"PaddedPooling2D": ("same_padding", "pair"), "AdaptiveAveragePooling2D": ("pair",),
            "StridedDilatedConv2D": ("pair",)}


def sections() -> Dict[str, str]:
    return split_sections(SOURCE)
