"""Backend labels (`torch:cuda`), --device and --tf32 without a GPU: what is refused
and how, and that `torch:cpu` is plain `torch`. The GPU runs themselves are in
tests/gpu (skipped without CUDA)."""

import pytest

from parity.__main__ import main as parity_main
from parity.engine.config import ParityUsageError, check_backends, place_backends
from refnets import backends
from refnets.backends import UnknownBackendError

from conftest import INSTALLED


def test_labels_name_a_backend_and_a_device():
    assert backends.parse_label("torch") == ("torch", "cpu")
    assert backends.parse_label("torch:cuda:1") == ("torch", "cuda:1")
    assert backends.canonical_label("torch:cpu") == "torch"
    assert backends.on_device("torch", "cuda") == "torch:cuda"
    assert backends.on_device("mxnet", "cuda") == "mxnet"  # stays on the CPU
    assert backends.on_device("torch:cpu", "cuda") == "torch:cpu"  # a named device wins
    with pytest.raises(UnknownBackendError, match="runs on cpu"):
        backends.parse_label("numpy:cuda")
    with pytest.raises(UnknownBackendError, match="asks for 'gpu'"):
        backends.parse_label("torch:gpu")


def test_one_key_per_backend_and_device():
    assert check_backends(["torch:cpu", "torch:cuda"]) == ["torch", "torch:cuda"]
    with pytest.raises(ParityUsageError, match="twice"):
        check_backends(["torch", "torch:cpu"])


def test_device_moves_the_backends_that_can_and_refuses_when_none_can():
    assert place_backends(["numpy", "torch"], "cuda", tf32=False) == ["numpy", "torch:cuda"]
    assert place_backends(["numpy", "torch"], "cpu", tf32=False) == ["numpy", "torch"]
    with pytest.raises(ParityUsageError, match="none of numpy, mxnet runs there"):
        place_backends(["numpy", "mxnet"], "cuda", tf32=False)
    with pytest.raises(ParityUsageError, match="--tf32"):
        place_backends(["numpy", "torch"], "cpu", tf32=True)


@pytest.mark.parametrize("argv, message", [
    (["--device", "cuda", "--backends", "numpy,mxnet"], "none of numpy, mxnet runs there"),
    (["--tf32", "--backends", "numpy,torch"], "--tf32 allows TF32 on a GPU"),
    (["--backends", "numpy,torch:tpu"], "asks for 'tpu'"),
    (["--port", "x.py:build", "--device", "cuda"], "--device does not apply to a port check"),
])
def test_bad_device_arguments_are_usage_errors(argv, message, capsys):
    assert parity_main(["lenet", "--quiet", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")
def test_cuda_without_a_gpu_is_an_environment_error_not_a_cpu_run(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device (tests/gpu covers it)")
    assert parity_main(["lenet", "--backends", "numpy,torch", "--device", "cuda", "--quiet"]) == 2
    assert "sees no CUDA device" in capsys.readouterr().err


@pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")
def test_a_cpu_label_is_the_plain_backend_in_the_report(capsys):
    assert parity_main(["lenet", "--backends", "numpy,torch:cpu", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "torch vs numpy" in out and "devices:" not in out
