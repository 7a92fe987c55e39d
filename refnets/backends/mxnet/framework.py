"""MXNet Gluon, imported once for the mxnet backend package: context, dtypes, versions."""

from __future__ import annotations

from typing import Dict

import mxnet as mx
from mxnet import autograd, gluon  # noqa: F401 (shared by the package's modules)
from mxnet.gluon import nn  # noqa: F401

DTYPES = ("float32", "float64")
CONTEXT = mx.cpu()


def versions() -> Dict[str, str]:
    return {"mxnet": mx.__version__}
