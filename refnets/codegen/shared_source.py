"""Source text of the helpers that the generated modules of several frameworks carry
word for word (plain Python, no framework): TensorFlow's 'same' rule, the padding of a
pool whose windows follow PyTorch's, the safetensors reader, `pair`. Each framework's
helper SOURCE names a piece by a `<<name>>` line, and `fill` puts the text there, so a
fix to a piece reaches every generated file. `split_sections` cuts a filled SOURCE at
its "# --- name" markers.

This module imports no framework (the text is code for the generated file).
"""

from __future__ import annotations

import re
from typing import Dict

PAIR = r'''
def pair(value):
    """An int or a pair as a pair."""
    return (value, value) if isinstance(value, int) else tuple(value)
'''.strip("\n")


SAME_PADDING = r'''
def same_padding(size, kernel, stride, dilation=1):
    """TensorFlow's 'same' padding along one axis, as (before, after): the output has
    ceil(size / stride) cells and the total padding is split with the smaller half
    first (top / left).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2
'''.strip("\n")


POOL_PADDING = r'''
def pool_padding(size, kernel, stride, before, after, ceil_mode):
    """(before, after) padding along one axis after which a floor-mode pool has
    PyTorch's windows: the pool's own padding plus, in ceil mode, the overhang of the
    last window (a window that would start in the bottom / right padding is dropped).
    """
    room = size + before + after - kernel
    out = room // stride + 1
    if ceil_mode:
        out = -(-room // stride) + 1
        if (out - 1) * stride >= size + before:
            out -= 1
    return before, after + max(0, (out - 1) * stride + kernel - (size + before + after))
'''.strip("\n")


READ_SAFETENSORS = r'''
def read_safetensors(path):
    """name -> numpy array from a .safetensors file (an 8-byte little-endian header
    size, a JSON header, then the raw little-endian arrays).
    """
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        data = handle.read()
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]]).newbyteorder("<")
        flat = np.frombuffer(data[start:end], dtype=dtype)
        arrays[name] = flat.reshape(info["shape"])
    return arrays
'''.strip("\n")


PIECES = {"pair": PAIR, "same_padding": SAME_PADDING, "pool_padding": POOL_PADDING,
          "read_safetensors": READ_SAFETENSORS}


def fill(source: str) -> str:
    """`source` with every `<<name>>` line replaced by the piece of that name."""
    return re.sub(r"^<<(\w+)>>$", lambda match: PIECES[match.group(1)], source, flags=re.M)


def split_sections(source: str) -> Dict[str, str]:
    """name -> text of each "# --- name" section of a helper SOURCE."""
    out = {}
    for chunk in source.split("# --- ")[1:]:
        name, _, text = chunk.partition("\n")
        out[name.strip()] = text.strip("\n")
    return out
