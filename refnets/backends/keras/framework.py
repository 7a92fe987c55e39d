"""Keras 3 on TensorFlow, imported once for the keras backend package.

Before the first `import keras`: Keras on TensorFlow, and TensorFlow's C++ INFO
lines (CPU feature notices, XLA start-up) kept off stderr; both only where unset.
The models run channels-last (NHWC): TensorFlow's CPU convolutions support no
other layout."""

from __future__ import annotations

import os
from typing import Dict

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from refnets.backends.coexist import load_triton_before_tensorflow  # noqa: E402

load_triton_before_tensorflow()  # torch's triton after TensorFlow >= 2.20 segfaults

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402,F401 (shared by the package's modules)

if keras.backend.backend() != "tensorflow":
    raise ImportError(f"the keras backend runs on Keras's TensorFlow backend, but Keras was loaded with "
                      f"{keras.backend.backend()!r} (set KERAS_BACKEND=tensorflow)")

DTYPES = ("float32", "float64")
CHANNELS_LAST = "channels_last"


def versions() -> Dict[str, str]:
    return {"keras": keras.__version__, "tensorflow": tf.__version__}
