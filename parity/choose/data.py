"""The data sets of `--fit`, read locally, never downloaded.

    load("digits", input_shape)            scikit-learn's 1,797 8x8 handwritten digits
    load("mnist:DIR", input_shape)         MNIST IDX files in DIR
    load("fashion-mnist:DIR", input_shape) Fashion-MNIST IDX files in DIR (the same names)
    load("cifar10:DIR", input_shape)       the CIFAR-10 python batches in DIR

Every image is fitted to the model's input: resized bilinearly to its height and
width (digits: 8x8 -> 28x28 for lenet; MNIST's 28x28 is kept as it is for a
28x28 model), made grey (the mean of the colour channels) for a one-channel
model or repeated over the channels of a colour model, scaled to [0, 1] and
standardised with the training set's mean and standard deviation.

digits: ships inside scikit-learn (`load_digits`, the `[fit]` extra), no
download; a fixed train/test split: a permutation seeded by SPLIT_SEED (not by
--seed), the last TEST_FRACTION of it the test set (1,438 / 359 images).

MNIST and Fashion-MNIST: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
`t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (or the same names ending in
`.gz`), read by `read_idx` (the IDX format: two zero bytes, a type code, the
number of dimensions, a big-endian uint32 per dimension, then the data).

CIFAR-10: `data_batch_1` ... `data_batch_5` and `test_batch` of the python
version (cifar-10-batches-py). These are pickles; only those standard files are
unpickled, and with an unpickler that refuses every global but numpy's array
reconstruction (`read_cifar_batch`), so a file that is not a CIFAR batch cannot
run code.

A missing or malformed file is a `DataError` (a usage error, exit 2) that names it.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..engine.config import ParityUsageError

NAMES = ("digits", "mnist", "fashion-mnist", "cifar10")
SPLIT_SEED = 20161
TEST_FRACTION = 0.2
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"


class DataError(ParityUsageError):
    """A --data argument that names no data set, or a file missing or malformed (exit 2)."""


@dataclass
class DataSet:
    name: str  # as given to --data
    x_train: np.ndarray  # (N, C, H, W) float32, standardised
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    how: str  # what was done to fit the images to the model, for the report


def parse(text: str) -> Tuple[str, Optional[str]]:
    """'digits' -> ('digits', None); 'mnist:DIR' -> ('mnist', DIR)."""
    name, sep, directory = text.partition(":")
    if name not in NAMES:
        raise DataError(f"--data {text}: unknown data set {name!r}; choose digits, mnist:DIR, fashion-mnist:DIR "
                        f"or cifar10:DIR")
    if name == "digits":
        if sep:
            raise DataError(f"--data {text}: digits ships inside scikit-learn and takes no directory")
        return name, None
    if not directory:
        raise DataError(f"--data {text}: say where the files are: --data {name}:DIR")
    if not os.path.isdir(directory):
        raise DataError(f"--data {text}: {directory} is not a directory")
    return name, directory


def load(text: str, input_shape, limit: Optional[int] = None) -> DataSet:
    """The data set `text` (see `parse`) fitted to `input_shape` (C, H, W); `limit`:
    at most that many training and that many test images (the first ones)."""
    name, directory = parse(text)
    if name == "digits":
        (x_train, y_train), (x_test, y_test) = load_digits_split()
    elif name == "cifar10":
        (x_train, y_train), (x_test, y_test) = load_cifar10(directory)
    else:
        (x_train, y_train), (x_test, y_test) = (load_idx_pair(directory, part) for part in ("train", "test"))
    if limit is not None:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]
    source = x_train.shape[1:]
    x_train, x_test = fit_images(x_train, input_shape), fit_images(x_test, input_shape)
    mean, std = float(x_train.mean()), float(x_train.std()) or 1.0
    how = (f"{source[0]}x{source[1]}x{source[2]} -> {'x'.join(map(str, input_shape))}"
           f"{' (resized bilinearly)' if tuple(source[1:]) != tuple(input_shape[1:]) else ''}, standardised")
    classes = int(max(y_train.max(), y_test.max())) + 1
    return DataSet(text, ((x_train - mean) / std).astype(np.float32), y_train.astype(np.int64),
                   ((x_test - mean) / std).astype(np.float32), y_test.astype(np.int64), classes, how)


# ------------------------------------------------------------------ the sources


def load_digits_split():
    """((x, y) train, (x, y) test) of scikit-learn's digits, images (N, 1, 8, 8) in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ParityUsageError("--data digits needs scikit-learn: pip install 'refnets[fit]'") from None
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    cut = len(x) - int(round(len(x) * TEST_FRACTION))
    return (x[order[:cut]], digits.target[order[:cut]]), (x[order[cut:]], digits.target[order[cut:]])


def _open(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def read_idx(path: str) -> np.ndarray:
    """The array in an IDX file (plain or .gz); DataError naming it when it is not one."""
    try:
        with _open(path) as handle:
            blob = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read it: {err}") from None
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (wrong magic number {blob[:4].hex() or 'none'}; "
                        f"expected 0000 then a type code such as 08, then the number of dimensions)")
    dtype, ndim = np.dtype(IDX_TYPES[blob[2]]), blob[3]
    if ndim < 1 or len(blob) < 4 + 4 * ndim:
        raise DataError(f"{path}: malformed IDX file: {ndim} dimensions and a header cut short")
    shape = struct.unpack(f">{ndim}I", blob[4:4 + 4 * ndim])
    size = int(np.prod(shape)) * dtype.itemsize
    if len(blob) - 4 - 4 * ndim != size:
        raise DataError(f"{path}: malformed IDX file: shape {shape} needs {size} bytes of data, "
                        f"the file holds {len(blob) - 4 - 4 * ndim}")
    return np.frombuffer(blob, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)


def _find(directory: str, name: str) -> str:
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise DataError(f"{os.path.join(directory, name)} (or .gz): no such file")


def load_idx_pair(directory: str, part: str):
    """(images (N, 1, H, W) in [0, 1], labels) of the `part` ("train", "test") IDX files."""
    image_path, label_path = (_find(directory, name) for name in IDX_FILES[part])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3:
        raise DataError(f"{image_path}: expected images (N, H, W), the file holds shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{label_path}: expected {len(images)} labels for the {len(images)} images of "
                        f"{image_path}, the file holds shape {labels.shape}")
    return (images.astype(np.float32) / 255.0)[:, None], labels.astype(np.int64)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings, bytes and numpy arrays; refuses every other global."""

    ALLOWED = {(core, name) for core in ("numpy.core.multiarray", "numpy._core.multiarray")
               for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype"),
                                                           ("_codecs", "encode")}  # bytes in protocol 2

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing the global {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: str):
    """(images (N, 3, 32, 32) in [0, 1], labels) of one CIFAR-10 python batch."""
    try:
        with open(path, "rb") as handle:
            batch = _ArraysOnly(handle, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (the CIFAR-10 python batches: "
                        f"{', '.join(CIFAR_TRAIN)}, {CIFAR_TEST})") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"{path}: not a CIFAR-10 python batch: {err}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (a {type(batch).__name__}, not a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or labels is None or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 \
            or len(labels) != len(data):
        raise DataError(f"{path}: not a CIFAR-10 python batch (expected 'data' of shape (N, 3072) and N 'labels')")
    return (data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0), np.asarray(labels, dtype=np.int64)


def load_cifar10(directory: str):
    root = os.path.join(directory, "cifar-10-batches-py")
    root = root if os.path.isdir(root) else directory
    train = [read_cifar_batch(os.path.join(root, name)) for name in CIFAR_TRAIN]
    test = read_cifar_batch(os.path.join(root, CIFAR_TEST))
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])), test


# ------------------------------------------------------------------ fitting


def fit_images(images: np.ndarray, input_shape) -> np.ndarray:
    """(N, C, H, W) images -> (N, *input_shape): channels made grey or repeated,
    then resized bilinearly (see the module docstring)."""
    channels, height, width = input_shape
    if images.shape[1] != channels:
        grey = images.mean(axis=1, keepdims=True)
        images = grey if channels == 1 else np.repeat(grey, channels, axis=1)
    if images.shape[2:] != (height, width):
        images = resize_bilinear(images, height, width)
    return images.astype(np.float32)


def resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (N, C, h, w) to (N, C, height, width), pixel centres aligned
    (the half-pixel convention), edges clamped."""
    def weights(size_in, size_out):
        pos = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, size_in - 1)
        return low, high, (pos - low).astype(np.float32)

    r0, r1, rw = weights(images.shape[2], height)
    c0, c1, cw = weights(images.shape[3], width)
    rows = images[:, :, r0] * (1 - rw)[:, None] + images[:, :, r1] * rw[:, None]
    return rows[..., c0] * (1 - cw) + rows[..., c1] * cw
