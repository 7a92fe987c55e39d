"""torch and keras in one process, in either import order: torch's first optimiser
imports triton, which segfaults after TensorFlow >= 2.20 unless refnets orders the
two libraries (refnets/backends/coexist.py). Each case runs in a subprocess so a
crash is reported as a failure with its signal instead of killing the runner."""

import subprocess
import sys

import pytest

from conftest import INSTALLED

FIRST_OPTIMISER = ("import torch; torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1); "
                   "print('ok', sys.modules.get('triton', 'never imported') is not None)")


@pytest.mark.skipif(not {"torch", "keras"} <= set(INSTALLED), reason="needs torch and keras")
@pytest.mark.parametrize("first", ["keras backend", "torch backend", "tensorflow itself"])
def test_torch_optimiser_after_tensorflow_does_not_crash(first):
    loads = {"keras backend": "backends.get('keras'); backends.get('torch')",
             "torch backend": "backends.get('torch'); backends.get('keras')",
             "tensorflow itself": "import tensorflow; backends.get('torch')"}[first]
    code = f"import sys; from refnets import backends; {loads}; {FIRST_OPTIMISER}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.split()[0] == "ok"
