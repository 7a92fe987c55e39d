"""Source text of the helpers a generated PyTorch module may need, in sections
("# --- name" markers; `section(name)`): TensorFlow's 'same' rule, per-side
padding, pools over explicit padding, the biased running-variance BatchNorm, the
stage builder and the canonical weight loader. Already in ruff format style.

This module imports no framework (the text is code for the generated file).
"""

from __future__ import annotations

from typing import Dict

from .shared_source import fill, split_sections

SOURCE = fill(r'''
# --- same_padding
<<same_padding>>


# --- SameConv2d
class SameConv2d(nn.Conv2d):
    """A conv with TensorFlow's 'same' padding, worked out for each input size: the
    conv's own zero padding where it is symmetric, else an explicit zero pad before
    it.
    """

    def forward(self, x):
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        top, bottom = same_padding(x.shape[2], kh, sh, dh)
        left, right = same_padding(x.shape[3], kw, sw, dw)
        if top == bottom and left == right:
            padding = (top, left)
        else:
            x, padding = F.pad(x, (left, right, top, bottom)), 0
        return F.conv2d(
            x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups
        )


# --- PaddedConv2d
class PaddedConv2d(nn.Conv2d):
    """A conv whose zero padding (top, bottom, left, right) differs per side: an
    explicit zero pad, then the conv without padding.
    """

    def __init__(self, *args, padding, **kwargs):
        super().__init__(*args, **kwargs)
        top, bottom, left, right = padding
        self.side_padding = (left, right, top, bottom)

    def forward(self, x):
        return super().forward(F.pad(x, self.side_padding))


# --- PaddedPool2d
<<pool_padding>>


class PaddedPool2d(nn.Module):
    """Max or average pool over padding nn.MaxPool2d / nn.AvgPool2d cannot take (per
    side, more than half the kernel, or TensorFlow's 'same' rule, resolved per input
    size).

    The padding and the ceil-mode overhang are made explicit: a max pool pads with -inf
    (padding never wins); an average pool sums over zero padding and divides by
    PyTorch's divisor: with count_include_pad the window's cells in the input or the
    padding (not the overhang), else its cells in the input only.
    """

    def __init__(
        self, kind, kernel, stride, padding, ceil_mode=False, count_include_pad=True
    ):
        super().__init__()
        self.kind, self.kernel, self.stride = kind, kernel, stride
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, x):
        (kh, kw), (sh, sw), (h, w) = self.kernel, self.stride, x.shape[2:]
        if self.padding == "same":
            top, bottom = same_padding(h, kh, sh)
            left, right = same_padding(w, kw, sw)
        else:
            top, bottom, left, right = self.padding
        if top == bottom and left == right and top <= kh // 2 and left <= kw // 2:
            if self.kind == "max":
                return F.max_pool2d(
                    x, self.kernel, self.stride, (top, left), ceil_mode=self.ceil_mode
                )
            return F.avg_pool2d(
                x,
                self.kernel,
                self.stride,
                (top, left),
                self.ceil_mode,
                self.count_include_pad,
            )
        top, bottom2 = pool_padding(h, kh, sh, top, bottom, self.ceil_mode)
        left, right2 = pool_padding(w, kw, sw, left, right, self.ceil_mode)
        pad = (left, right2, top, bottom2)
        if self.kind == "max":
            return F.max_pool2d(
                F.pad(x, pad, value=float("-inf")), self.kernel, self.stride
            )
        summed = F.avg_pool2d(F.pad(x, pad), self.kernel, self.stride) * (kh * kw)
        cells = x.new_ones((1, 1, h, w))
        if self.count_include_pad:
            cells = F.pad(cells, (left, right, top, bottom), value=1.0)
            overhang = (0, right2 - right, 0, bottom2 - bottom)
        else:
            overhang = pad
        cells = F.pad(cells, overhang)
        divisor = F.avg_pool2d(cells, self.kernel, self.stride, divisor_override=1)
        return summed / divisor


# --- GlobalAvgPool
class GlobalAvgPool(nn.Module):
    """Mean over height and width."""

    def __init__(self, keepdim=False):
        super().__init__()
        self.keepdim = keepdim

    def forward(self, x):
        return x.mean((2, 3), keepdim=self.keepdim)


# --- BiasedVarBatchNorm
class BiasedVarBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode update of running_var uses the biased batch
    variance (Keras's and MXNet's rule; PyTorch's own uses the unbiased one).
    Inference is PyTorch's BatchNorm.
    """

    def _check_input_dim(self, x):
        pass

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        out = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.no_grad():
            dims = [0] + list(range(2, x.dim()))
            var, mean = torch.var_mean(x, dim=dims, unbiased=False)
            self.running_mean.mul_(1.0 - self.momentum).add_(mean, alpha=self.momentum)
            self.running_var.mul_(1.0 - self.momentum).add_(var, alpha=self.momentum)
            self.num_batches_tracked.add_(1)
        return out


# --- make_stage
def make_stage(in_channels, plan, prefix="", start=0):
    """A stage: for each row (block class, count, arguments after in_channels) of its
    plan, `count` blocks, each taking the previous block's out_channels; named
    f"{prefix}{start}", f"{prefix}{start + 1}", ...
    """
    stage = nn.Sequential()
    channels = in_channels
    for block, count, *args in plan:
        for _ in range(count):
            layer = block(channels, *args)
            stage.add_module(f"{prefix}{start + len(stage)}", layer)
            channels = layer.out_channels
    return stage


# --- load_canonical
SAFETENSORS_DTYPES = {"F16": torch.float16, "F32": torch.float32, "F64": torch.float64}


def read_safetensors(path):
    """name -> tensor from a .safetensors file, read with the standard library (the
    format is an 8-byte little-endian header size, a JSON header, then the raw
    little-endian arrays), so this file needs nothing but torch.
    """
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        data = handle.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = SAFETENSORS_DTYPES[info["dtype"]]
        if start == end:
            tensors[name] = torch.zeros(info["shape"], dtype=dtype)
            continue
        flat = torch.frombuffer(bytearray(data[start:end]), dtype=dtype)
        tensors[name] = flat.reshape(info["shape"])
    return tensors


def load_canonical(model, path):
    """Load canonical weights into `model` and return it.

    `path` is a safetensors file of name -> array in refnets' canonical layout: conv
    weights (out, in, kh, kw), dense weights (out, in) with a flattened input in
    channels, height, width order, BatchNorm weight, bias, running_mean and running_var.
    The names are this model's state_dict keys (num_batches_tracked aside) and PyTorch's
    layouts are the canonical ones, so each array is copied as it is. Every name and
    shape is checked before anything is set.
    """
    weights = read_safetensors(path)
    state = model.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    problems = [f"missing {k}" for k in sorted(set(state) - set(weights))]
    problems += [f"unexpected {k}" for k in sorted(set(weights) - set(state))]
    problems += [
        f"{k}: expected {tuple(v.shape)}, got {tuple(weights[k].shape)}"
        for k, v in state.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    if problems:
        raise ValueError("weights do not fit the model: " + "; ".join(problems))
    with torch.no_grad():
        for name, tensor in state.items():
            tensor.copy_(weights[name].to(tensor.dtype))
    return model
''')

REQUIRES = {"SameConv2d": ("same_padding",), "PaddedPool2d": ("same_padding",)}


def sections() -> Dict[str, str]:
    return split_sections(SOURCE)
