"""Source text of the helpers a generated Gluon module may need, in sections
("# --- name" markers, as in `torch_helpers`): the named container, per-side
padding, pools over explicit padding, the small blocks gluon.nn lacks, the stage
builder and the canonical weight loader. Already in ruff format style.

This module imports no framework (the text is code for the generated file).
"""

from __future__ import annotations

from typing import Dict

from .shared_source import fill, split_sections

SOURCE = fill(r'''
# --- pair
<<pair>>


# --- Blocks
class Blocks(nn.HybridBlock):
    """Child blocks registered under the spec's names (nn.HybridSequential numbers
    them 0, 1, 2, ...): attributes of those names, run in order when called,
    reached by name or position.
    """

    def __init__(self, *blocks):
        super().__init__()
        self.names = []
        for block in blocks:
            self.add(str(len(self.names)), block)

    def add(self, name, block):
        setattr(self, name, block)
        self.names.append(name)
        return block

    def __setitem__(self, name, block):
        self.add(name, block)

    def __getitem__(self, key):
        return getattr(self, self.names[key] if isinstance(key, int) else key)

    def __len__(self):
        return len(self.names)

    def hybrid_forward(self, F, x):
        for name in self.names:
            x = getattr(self, name)(x)
        return x


# --- Identity
class Identity(nn.HybridBlock):
    """Passes its input through."""

    def hybrid_forward(self, F, x):
        return F.identity(x)


# --- Softmax
class Softmax(nn.HybridBlock):
    """Softmax over the channels (axis 1): nn.Activation has none."""

    def hybrid_forward(self, F, x):
        return F.softmax(x, axis=1)


# --- GlobalAvgPool
class GlobalAvgPool(nn.HybridBlock):
    """Mean over height and width: (N, C, H, W) -> (N, C)."""

    def hybrid_forward(self, F, x):
        return F.mean(x, axis=(2, 3))


# --- AdaptiveAvgPool2D
class AdaptiveAvgPool2D(nn.HybridBlock):
    """PyTorch's adaptive average pool (MXNet's contrib operator has its windows)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = pair(output_size)

    def hybrid_forward(self, F, x):
        return F.contrib.AdaptiveAvgPooling2D(x, output_size=self.output_size)


# --- ZeroPad2D
class ZeroPad2D(nn.HybridBlock):
    """Zero padding (top, bottom, left, right) of height and width."""

    def __init__(self, padding):
        super().__init__()
        top, bottom, left, right = padding
        self.pad_width = (0, 0, 0, 0, top, bottom, left, right)

    def hybrid_forward(self, F, x):
        return F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0)


# --- PaddedConv2D
class PaddedConv2D(nn.Conv2D):
    """A conv whose zero padding (top, bottom, left, right) differs per side: an
    explicit zero pad, then the conv without padding. A subclass, so its parameters
    keep the conv's names.
    """

    def __init__(self, *args, side_padding, **kwargs):
        super().__init__(*args, **kwargs)
        top, bottom, left, right = side_padding
        self.pad_width = (0, 0, 0, 0, top, bottom, left, right)

    def hybrid_forward(self, F, x, weight, bias=None):
        x = F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0)
        return super().hybrid_forward(F, x, weight, bias)


# --- PaddedPool2D
class PaddedPool2D(nn.HybridBlock):
    """Max or average pool over padding nn.MaxPool2D / nn.AvgPool2D cannot take (per
    side, more than half the window, or PyTorch's ceil mode, whose last window may
    overhang the padding by `overhang` rows and columns at the bottom and right).

    A max pool pads with -inf (padding never wins); an average pool sums over zero
    padding and divides by PyTorch's divisor: with count_include_pad the window's
    cells in the input or the padding (not the overhang), else its cells in the
    input only.
    """

    def __init__(
        self, kind, kernel, stride, padding, overhang=(0, 0), count_include_pad=True
    ):
        super().__init__()
        self.kind, self.kernel, self.stride = kind, pair(kernel), pair(stride)
        top, bottom, left, right = padding
        down, across = overhang
        self.padding = (0, 0, 0, 0, top, bottom, left, right)
        self.window = (0, 0, 0, 0, top, bottom + down, left, right + across)
        self.overhang = (0, 0, 0, 0, 0, down, 0, across)
        self.count_include_pad = count_include_pad

    def pool(self, F, x, kind):
        return F.Pooling(x, kernel=self.kernel, stride=self.stride, pool_type=kind)

    def hybrid_forward(self, F, x):
        if self.kind == "max":
            return self.pool(F, pad(F, x, self.window, float("-inf")), "max")
        summed = self.pool(F, pad(F, x, self.window, 0), "sum")
        cells = F.ones_like(F.slice_axis(x, axis=1, begin=0, end=1))
        if self.count_include_pad:
            cells = pad(F, pad(F, cells, self.padding, 1), self.overhang, 0)
        else:
            cells = pad(F, cells, self.window, 0)
        return F.broadcast_div(summed, self.pool(F, cells, "sum"))


def pad(F, x, width, value):
    """`x` padded by `width` (MXNet's pad_width over N, C, H, W) with `value`."""
    return F.pad(x, mode="constant", pad_width=width, constant_value=value)


# --- make_stage
def make_stage(in_channels, plan, prefix="", start=0):
    """A stage: for each row (block class, count, arguments after in_channels) of its
    plan, `count` blocks, each taking the previous block's out_channels; named
    f"{prefix}{start}", f"{prefix}{start + 1}", ...
    """
    stage = Blocks()
    channels = in_channels
    for block, count, *args in plan:
        for _ in range(count):
            layer = stage.add(f"{prefix}{start + len(stage)}", block(channels, *args))
            channels = layer.out_channels
    return stage


# --- load_canonical
SAFETENSORS_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
CANONICAL = {"gamma": "weight", "beta": "bias"}  # Gluon's BatchNorm names


<<read_safetensors>>


def structural_params(block, path=""):
    """(name, parameter) pairs of `block` and the blocks under it, named as
    save_parameters names them: the path of attribute names down to the block, then
    the parameter's role (its name after the block's prefix).
    """
    for param in block.params.values():
        yield path + param.name[len(block.prefix) :], param
    for name, child in vars(block).items():
        if isinstance(child, gluon.Block):
            yield from structural_params(child, f"{path}{name}.")


def canonical_params(model):
    """Canonical name -> Gluon parameter: the structural names, with BatchNorm's
    gamma and beta as weight and bias (a block called twice has its parameters
    once, under its first name). The fixed gamma and beta (grad_req "null") of a
    BatchNorm without scale and center are no weights.
    """
    params, seen = {}, set()
    for name, param in structural_params(model):
        prefix, _, role = name.rpartition(".")
        if id(param) in seen or (role in CANONICAL and param.grad_req == "null"):
            continue
        seen.add(id(param))
        params[f"{prefix}.{CANONICAL.get(role, role)}"] = param
    return params


def load_canonical(model, path):
    """Load canonical weights into `model` and return it.

    `path` is a safetensors file of name -> array in refnets' canonical layout: conv
    weights (out, in, kh, kw), dense weights (out, in) with a flattened input in
    channels, height, width order, BatchNorm weight, bias, running_mean and
    running_var. Gluon's layouts are the canonical ones and the blocks are
    registered under the spec's names, so each array is set as it is. Every name and
    shape is checked before anything is set.
    """
    arrays = read_safetensors(path)
    params = canonical_params(model)
    problems = [f"missing {k}" for k in sorted(set(params) - set(arrays))]
    problems += [f"unexpected {k}" for k in sorted(set(arrays) - set(params))]
    problems += [
        f"{k}: expected {tuple(p.shape)}, got {tuple(arrays[k].shape)}"
        for k, p in params.items()
        if k in arrays and tuple(arrays[k].shape) != tuple(p.shape)
    ]
    if problems:
        raise ValueError("weights do not fit the model: " + "; ".join(problems))
    for name, param in params.items():
        param.set_data(mx.nd.array(arrays[name], dtype=param.dtype))
    return model
''')

REQUIRES = {"make_stage": ("Blocks",), "PaddedPool2D": ("pair",), "AdaptiveAvgPool2D": ("pair",)}
ORDER = ["pair", "Blocks", "Identity", "Softmax", "GlobalAvgPool", "AdaptiveAvgPool2D", "ZeroPad2D", "PaddedConv2D",
         "PaddedPool2D", "make_stage"]


def sections() -> Dict[str, str]:
    return split_sections(SOURCE)
