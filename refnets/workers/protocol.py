"""The worker protocol's framing: one message is a JSON header plus named arrays in
the safetensors format, length-prefixed:

    8 bytes  big-endian length of the header (UTF-8 JSON)
    8 bytes  big-endian length of the arrays (a safetensors buffer; 0: no arrays)
    header, then arrays

The safetensors buffer is written and read here, not through `safetensors.numpy`
(whose `save` returns one `bytes` copy of everything and whose `load` wants a
second): arrays are written straight from their own memory and read back as views
of the one buffer received, so a transfer costs one copy of the data, not three.
The format is the library's (tests check both ways with it).

Used by both ends. Imports only the standard library at module level: numpy is
imported when a message carries arrays, so a worker whose interpreter lacks it
can still send back a header that says so.
"""

from __future__ import annotations

import io
import json
import os
import select
import struct
import time
from typing import Dict, Optional, Tuple

PREFIX = struct.Struct(">QQ")
CHUNK = 1 << 24
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


class ChannelClosed(EOFError):
    """The other end closed the pipe (a worker that died, a parent that went away)."""


class ChannelTimeout(TimeoutError):
    """No complete message within the deadline."""


def _code(dtype) -> str:
    import numpy as np

    for code, spec in DTYPES.items():
        if dtype == np.dtype(spec):
            return code
    raise TypeError(f"arrays of dtype {dtype} cannot be sent to or from a worker")


def _little_endian(value):
    import numpy as np

    value = np.asarray(value, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    return value.astype(value.dtype.newbyteorder("<")) if value.dtype.byteorder == ">" else value


def safetensors_parts(arrays: Optional[Dict[str, object]]):
    """(total size, [buffers]) of `arrays` in the safetensors format, the arrays'
    own memory as buffers. Wider dtypes first, so every array stays aligned."""
    if not arrays:
        return 0, []
    items = sorted(((name, _little_endian(value)) for name, value in arrays.items()),
                   key=lambda item: -item[1].dtype.itemsize)
    meta, offset = {}, 0
    for name, value in items:
        meta[name] = {"dtype": _code(value.dtype),
                      "shape": list(value.shape), "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    head = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    buffers = [struct.pack("<Q", len(head)) + head]
    buffers += [memoryview(value.reshape(-1)).cast("B") for _, value in items if value.nbytes]
    return 8 + len(head) + offset, buffers


def load_safetensors(blob) -> Dict[str, object]:
    """The arrays of a safetensors buffer, as views of it (no copy)."""
    import numpy as np

    (size,) = struct.unpack("<Q", bytes(blob[:8]))
    meta = json.loads(bytes(blob[8:8 + size]).decode("utf-8"))
    meta.pop("__metadata__", None)
    out = {}
    for name, info in meta.items():
        begin, end = info["data_offsets"]
        dtype = np.dtype(DTYPES[info["dtype"]])
        out[name] = np.frombuffer(blob, dtype=dtype, count=(end - begin) // dtype.itemsize,
                                  offset=8 + size + begin).reshape(info["shape"])
    return out


def write_message(fd: int, header: dict, arrays: Optional[Dict[str, object]] = None) -> None:
    head = json.dumps(header, allow_nan=True).encode("utf-8")
    size, buffers = safetensors_parts(arrays)
    for buffer in [PREFIX.pack(len(head), size) + head] + buffers:
        view = memoryview(buffer)
        while view:
            written = os.write(fd, view[:CHUNK])
            view = view[written:]


def _read_exact(fd: int, size: int, deadline: Optional[float]) -> bytearray:
    """`size` bytes from `fd`, waiting at most until `deadline` (time.monotonic())."""
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    raw = io.FileIO(fd, "rb", closefd=False)
    while done < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise ChannelTimeout()
        count = raw.readinto(view[done:done + CHUNK])
        if not count:
            raise ChannelClosed()
        done += count
    return buffer


def read_message(fd: int, timeout: Optional[float] = None) -> Tuple[dict, Dict[str, object]]:
    """(header, arrays) of the next message; ChannelClosed at end of file,
    ChannelTimeout when it has not fully arrived within `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    head_size, blob_size = PREFIX.unpack(_read_exact(fd, PREFIX.size, deadline))
    header = json.loads(_read_exact(fd, head_size, deadline).decode("utf-8"))
    arrays = load_safetensors(_read_exact(fd, blob_size, deadline)) if blob_size else {}
    return header, arrays
