"""The zoo models the per-framework files do not run end to end (the VGGs,
AlexNet, the deeper ResNets v1 and v2), generated in each framework on small
inputs: the generated torch model agrees with our torch backend exactly (max abs
error 0: the same torch ops in the same order), and every generated model agrees
with the numpy reference within the parity bars in float32 and float64.

The default set runs the v1 blocks the per-framework files do not (Keras: the
basic block, not in its NUMERIC; every framework: ResNet-50's bottleneck); the
rest are slow (`pytest -m slow`): the 100M-parameter VGGs and AlexNet, and the
deeper ResNets, whose blocks these and the per-framework files already run. `python tests/codegen/test_zoo_numeric.py [MODEL ...]` prints
the worst errors as the README's table."""

from __future__ import annotations

import sys

import pytest

import refnets
from refnets import backends

from conftest import INSTALLED, TOLERANCE, relative_error, seeded_input
from codegen_helpers import max_abs, seeded_weights, small_spec, write_module

# Checked end to end in test_torch/test_keras/test_gluon.py (keras: not resnet18).
CHECKED = {"lenet", "nin", "googlenet", "densenet121", "mnist_googlenet", "mnist_resnet", "resnet18v2",
           "resnet50v2", "resnet18"}
DEFAULT = {("keras", "resnet34"), ("keras", "resnet50"), ("torch", "resnet50"), ("mxnet", "resnet50")}
FRAMEWORKS = ("torch", "keras", "mxnet")


def _torch_run(module, path, x):
    import torch

    from refnets.backends.torch.framework import ensure_threads

    ensure_threads()  # see below
    model = module.build()
    model = module.load_canonical(model.double() if x.dtype == "float64" else model, path)
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


# Measured: importing MXNet leaves torch one OpenMP thread; our torch backend puts
# torch's thread count back before each forward (ensure_threads), and at one
# thread against two a ResNet-50 conv rounds differently (output moved 5.8e-4 in
# max abs). The same ops at the same thread count agree exactly, so the generated
# model runs at our backend's thread count.


def _keras_run(module, path, x):
    import keras
    import numpy as np

    dtype = str(x.dtype)
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        model = module.load_canonical(module.build(), path)
        out = np.asarray(model(np.transpose(x, (0, 2, 3, 1))))
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")
    return np.transpose(out, (0, 3, 1, 2)) if out.ndim == 4 else out


def _mxnet_run(module, path, x):
    import mxnet as mx

    model = module.build()
    if x.dtype != "float32":
        model.cast(str(x.dtype))
    model = module.load_canonical(model, path)
    return model(mx.nd.array(x, dtype=x.dtype)).asnumpy()


RUN = {"torch": _torch_run, "keras": _keras_run, "mxnet": _mxnet_run}


def errors(spec, framework: str, folder) -> dict:
    """The generated `framework` module of `spec` on seeded weights and input:
    {"float32": relative error against the numpy reference in float32, "float64":
    the same in float64}, and for torch "exact": max abs error against our torch
    backend in float32."""
    module, _ = write_module(spec, framework, folder)
    reference = backends.get("numpy")
    out = {}
    for dtype in ("float32", "float64"):
        weights, path = seeded_weights(spec, folder, dtype)
        x = seeded_input(spec.input_shape, dtype=dtype)
        generated = RUN[framework](module, path, x)
        if framework == "torch" and dtype == "float32":
            ours = backends.get("torch")
            net = ours.build(spec)
            ours.set_weights(net, weights)
            out["exact"] = max_abs(generated, ours.forward(net, x)[0])
            del net
        net = reference.build(spec, dtype=dtype)
        reference.set_weights(net, weights)
        out[dtype] = relative_error(generated, reference.forward(net, x)[0])
        del net, weights
    return out


def _params():
    for framework in FRAMEWORKS:
        for name in refnets.list_models():
            if name in CHECKED and not (framework == "keras" and name == "resnet18"):
                continue
            marks = [pytest.mark.skipif(framework not in INSTALLED, reason=f"{framework} is not installed")]
            if (framework, name) not in DEFAULT:
                marks.append(pytest.mark.slow)
            yield pytest.param(framework, name, marks=marks, id=f"{framework}-{name}")


@pytest.mark.parametrize("framework,name", list(_params()))
def test_generated_zoo_model_agrees_with_the_reference(framework, name, tmp_path):
    found = errors(small_spec(name), framework, tmp_path)
    if framework == "torch":
        assert found["exact"] == 0.0
    assert found["float32"] <= TOLERANCE["float32"]
    assert found["float64"] <= TOLERANCE["float64"]


def _table(names) -> None:
    import tempfile

    print("| model | " + " | ".join(f"{f} f32 | {f} f64" for f in FRAMEWORKS) + " | torch vs ours |")
    print("|---" * (2 * len(FRAMEWORKS) + 2) + "|")
    for name in names:
        cells, exact = [], ""
        for framework in FRAMEWORKS:
            if framework not in INSTALLED:
                cells += ["-", "-"]
                continue
            with tempfile.TemporaryDirectory() as folder:
                found = errors(small_spec(name), framework, folder)
            cells += [f"{found['float32']:.1e}", f"{found['float64']:.1e}"]
            exact = f"{found['exact']:g}" if "exact" in found else exact
            if framework == "keras":
                import keras

                keras.backend.clear_session()
        print(f"| {name} | " + " | ".join(cells) + f" | {exact} |", flush=True)


if __name__ == "__main__":
    _table(sys.argv[1:] or refnets.list_models())


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_docstring_lists_the_framework_sensitive_choices_of_these_models(framework):
    """Generation only (no framework): each choice the model makes has its bullet."""
    from refnets.codegen import generate

    expected = {"alexnet": ["Conv padding", "Strides sit on", "Pools:", "Flatten", "Adaptive average pooling"],
                "vgg16": ["Conv padding", "Strides sit on", "Pools:", "Flatten", "Adaptive average pooling"],
                "resnet152": ["BatchNorm eps 1e-05", "Conv padding", "Strides sit on", "Global average pooling"],
                "resnet152v2": ["BatchNorm eps", "Conv padding", "Strides sit on", "Global average pooling"]}
    for name, bullets in expected.items():
        doc = generate(refnets.get_spec(name), framework).split("Framework-sensitive choices:")[1].split('"""')[0]
        found = [line[2:] for line in doc.splitlines() if line.startswith("- ")]
        for bullet in bullets:
            assert any(line.startswith(bullet) for line in found), (name, bullet, found)
        if framework != "torch" and name.startswith("resnet"):
            assert "biased batch variance" in " ".join(doc.split()), (name, doc)
