import os

import numpy as np
import pytest

from refnets import backends

# parity's CLI runs every backend in a worker by default; many tests patch a backend in
# this process and then run the CLI, so the suite runs them here unless a test asks for
# workers (tests/workers). A configured interpreter (REFNETS_PYTHON) is still a worker.
os.environ.setdefault("REFNETS_WORKERS", "0")

INSTALLED = backends.installed()

# Small inputs that every model of the foundation families accepts (fast tests).
SMALL_INPUTS = {
    "lenet": (1, 28, 28),
    "alexnet": (3, 63, 63),
    "vgg11": (3, 32, 32),
    "vgg13": (3, 32, 32),
    "vgg16": (3, 32, 32),
    "vgg19": (3, 32, 32),
    "nin": (1, 67, 67),
}

TOLERANCE = {"float32": 1e-5, "float64": 1e-10}

# Zoo models that only add depth to one the default set runs (vgg11/vgg16, resnet50,
# resnet50v2): same node types, same code paths, many more seconds. Their whole-model
# runs are in the slow set (pytest -m slow); torchvision's names include the _bn twins.
DEEPER_ONLY = {"vgg13", "vgg19", "resnet101", "resnet152", "resnet101v2", "resnet152v2", "vgg13_bn", "vgg19_bn"}


def backend_params(names=None):
    """pytest params for backends, skipped cleanly where the framework is missing."""
    return [pytest.param(b, marks=pytest.mark.skipif(b not in INSTALLED, reason=f"{b} is not installed"))
            for b in (names or backends.BACKENDS)]


def relative_error(a: np.ndarray, ref: np.ndarray) -> float:
    """max|a - ref| / max|ref|: the figure the parity bars are stated in."""
    scale = float(np.max(np.abs(ref)))
    return float(np.max(np.abs(a.astype(np.float64) - ref.astype(np.float64)))) / (scale or 1.0)


def seeded_input(shape, batch=2, dtype="float32", seed=1):
    return np.random.default_rng(seed).standard_normal((batch,) + tuple(shape)).astype(dtype)


# A full collection costs about a second once torch and TensorFlow are imported (half a
# million tracked objects): after every test it was several minutes of CI. It runs
# when the process has grown by this much since the last one, which still frees the
# 100M-parameter models of one test before the next builds its own.
COLLECT_AFTER_GROWTH = 1 << 30
_last_collect_rss = [0]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(autouse=True)
def _free_models():
    """Models of 100M+ parameters in three frameworks: free them between tests so a
    single pytest process stays well inside the machine's memory."""
    yield
    import gc
    import sys

    if "keras" in sys.modules:  # Keras's global state (layer names, graphs): cheap without its gc
        _clear_keras_session(sys.modules["keras"])
    if _rss_bytes() - _last_collect_rss[0] > COLLECT_AFTER_GROWTH:
        gc.collect()
        _last_collect_rss[0] = _rss_bytes()


def _clear_keras_session(keras) -> None:
    try:
        keras.backend.clear_session(free_memory=False)
    except TypeError:  # a Keras before the free_memory argument
        keras.backend.clear_session()
