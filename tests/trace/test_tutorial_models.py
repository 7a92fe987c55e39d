"""The issue's tutorial-style models (examples/tutorials, none imports refnets):
each is traced, round-trips through a spec file, and the traced spec built in
every installed backend with the model's own weights computes what the model
itself computes (float32 <= 1e-5, float64 <= 1e-10, relative to max|ref|)."""

import pathlib

import numpy as np
import pytest
from refnets import backends, specfile
from refnets.trace.user import load_and_trace

from conftest import INSTALLED, TOLERANCE, relative_error, seeded_input

TUTORIALS = pathlib.Path(__file__).resolve().parents[2] / "examples" / "tutorials"

MODELS = {  # file: (framework, input shape)
    "gluon_lenet": ("mxnet", (1, 28, 28)),
    "gluon_inception": ("mxnet", (3, 32, 32)),
    "gluon_residual": ("mxnet", (3, 32, 32)),
    "torch_shared_branches": ("torch", (3, 16, 16)),
    "torch_resnet18_bias": ("torch", (3, 64, 64)),
    "keras_bottleneck": ("keras", None),  # the model's own input shape
    "keras_subclassed": ("keras", None),
}
WORST = {}  # (model, dtype) -> (backend, error): printed for the note with -s


def _traced(name, dtype):
    framework, shape = MODELS[name]
    if framework not in INSTALLED:
        pytest.skip(f"{framework} is not installed")
    return load_and_trace(f"{TUTORIALS / name}.py:build", framework, shape, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_traced_spec_computes_the_model_in_every_backend(name, dtype):
    user = _traced(name, dtype)
    spec, weights = user.traced.spec, user.traced.weights
    assert specfile.loads(specfile.dumps(spec)) == spec
    x = seeded_input(spec.input_shape, batch=2, dtype=dtype)
    reference, _ = backends.get_reader(user.framework).forward(user.native, x)
    errors = {}
    for backend in [b for b in backends.BACKENDS if backends.is_installed(b)]:
        impl = backends.get(backend)
        net = impl.build(spec, dtype=dtype)
        impl.set_weights(net, weights)
        out, _ = impl.forward(net, x)
        assert out.shape == reference.shape, backend
        errors[backend] = relative_error(out, reference)
    worst = max(errors, key=errors.get)
    WORST[(name, dtype)] = (worst, errors[worst])
    print(f"\n{name} {dtype}: " + ", ".join(f"{b} {e:.2e}" for b, e in errors.items()))
    assert errors[worst] <= TOLERANCE[dtype], errors


def test_a_reused_conv_is_one_weight_entry_and_shared_in_the_spec():
    from refnets import spec as S

    user = _traced("torch_shared_branches", "float32")
    shared = [node for _, node in user.traced.spec.walk() if isinstance(node, S.Shared)]
    assert len(shared) == 2 and len({node.target for node in shared}) == 1
    assert sum(name.endswith(".weight") and "branch" in name for name in user.traced.weights) == 1


def test_the_gluon_lenet_fused_relus_become_explicit_nodes():
    from refnets import spec as S

    user = _traced("gluon_lenet", "float32")
    kinds = [type(n).__name__ for _, n in user.traced.spec.walk() if not isinstance(n, S.CONTAINERS)]
    assert kinds.count("Activation") == 3 and kinds.count("Conv2d") == 2 and kinds.count("Dense") == 2
    assert np.isclose(sum(np.prod(w.shape) for w in user.traced.weights.values()),
                      sum(p.data().size for p in user.native.collect_params().values()))
