"""torch on a CUDA device against torch on the CPU and the numpy reference. Skipped
cleanly where torch or a CUDA device is missing (CI never has one); run on a lent GPU
machine with `PYTHONPATH=. python -m pytest tests/gpu`."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import refnets  # noqa: E402
from parity.__main__ import main as parity_main  # noqa: E402
from refnets import backends  # noqa: E402
from refnets import weights as W  # noqa: E402

from conftest import TOLERANCE, relative_error, seeded_input  # noqa: E402

SHAPE = (3, 32, 32)


def _built(label, spec, canonical, dtype, tf32=False):
    impl = backends.get(label, tf32=tf32)
    net = impl.build(spec, dtype=dtype)
    impl.set_weights(net, W.cast(canonical, dtype))
    return impl, net


def _logits(label, spec, canonical, x, dtype="float64"):
    impl, net = _built(label, spec, canonical, dtype)
    return impl.forward(net, x.astype(dtype))[0]


@pytest.mark.parametrize("model", ["resnet18", "densenet121", "googlenet"])
def test_cuda_float64_agrees_with_the_cpu_and_numpy(model):
    spec = refnets.get_spec(model, input_shape=SHAPE)
    canonical = W.init(spec, seed=0, dtype="float64")
    x = seeded_input(SHAPE, dtype="float64")
    outputs = {label: _logits(label, spec, canonical, x) for label in ("torch:cuda", "torch", "numpy")}
    assert relative_error(outputs["torch:cuda"], outputs["torch"]) <= TOLERANCE["float64"]
    assert relative_error(outputs["torch:cuda"], outputs["numpy"]) <= TOLERANCE["float64"]


def test_cuda_gradients_and_training_step_agree_with_the_cpu():
    spec = refnets.get_spec("resnet18", input_shape=SHAPE)
    canonical = W.init(spec, seed=0, dtype="float64")
    x, labels = seeded_input(SHAPE, batch=4, dtype="float64"), np.array([0, 3, 7, 1])
    grads, after = {}, {}
    for label in ("torch:cuda", "torch"):
        impl, net = _built(label, spec, canonical, "float64")
        grads[label] = impl.gradients(net, x, labels, train=True)
        trainer = impl.Trainer(net, "momentum", 0.01, 0.9)
        for _ in range(2):
            trainer.step(x, labels)
        after[label] = impl.get_weights(net)
    assert relative_error(grads["torch:cuda"].input, grads["torch"].input) <= TOLERANCE["float64"]
    worst = max(relative_error(grads["torch:cuda"].params[k], grads["torch"].params[k]) for k in grads["torch"].params)
    assert worst <= TOLERANCE["float64"]
    assert max(relative_error(after["torch:cuda"][k], after["torch"][k]) for k in after["torch"]) <= TOLERANCE["float64"]


def test_tf32_is_off_unless_asked_and_the_flags_are_restored():
    spec = refnets.get_spec("resnet18", input_shape=SHAPE)
    canonical = W.init(spec, seed=0, dtype="float64")
    x = seeded_input(SHAPE, dtype="float64")
    reference = _logits("torch", spec, canonical, x)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    impl, net = _built("torch:cuda", spec, canonical, "float32")
    strict = relative_error(impl.forward(net, x.astype("float32"))[0], reference)
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32  # the user's setting is back
    assert "TF32 off" in impl.describe_device()
    assert strict <= TOLERANCE["float32"]
    impl, net = _built("torch:cuda", spec, canonical, "float32", tf32=True)
    assert "TF32 on" in impl.describe_device()
    loose = relative_error(impl.forward(net, x.astype("float32"))[0], reference)
    if torch.cuda.get_device_capability()[0] >= 8:  # TF32 exists from Ampere on
        assert loose > 10 * strict


def test_cli_compares_the_gpu_with_the_cpu_and_says_where_each_ran(tmp_path, capsys):
    report = tmp_path / "r.json"
    code = parity_main(["resnet18", "--backends", "torch:cuda,torch,numpy", "--dtype", "float64", "--input-shape",
                        "3,32,32", "--quiet", "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "devices: torch:cuda on cuda" in out and "TF32 off" in out
    data = json.loads(report.read_text())
    assert data["tf32"] is False and list(data["devices"]) == ["torch:cuda"]
    assert parity_main(["resnet18", "--backends", "numpy,torch", "--device", "cuda", "--tf32", "--input-shape",
                        "3,32,32", "--quiet"]) in (0, 1)
    assert "TF32 on" in capsys.readouterr().out
