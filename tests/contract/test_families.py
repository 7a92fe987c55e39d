"""Branching and residual families: counts, options, cross-backend parity."""

import itertools

import numpy as np
import pytest
import refnets
from refnets import backends, shapes
from refnets import weights as W

from conftest import INSTALLED, TOLERANCE, backend_params, relative_error, seeded_input

# name -> (trainable, total) at the default input, from the published models
COUNTS = {
    "googlenet": (6_998_552, 6_998_552),
    "resnet18": (11_689_512, 11_699_112),
    "resnet34": (21_797_672, 21_814_696),
    "resnet50": (25_557_032, 25_610_152),
    "resnet101": (44_549_160, 44_654_504),
    "resnet152": (60_192_808, 60_344_232),
    "resnet18v2": (11_687_848, 11_695_784),
    "resnet34v2": (21_796_008, 21_811_368),
    "resnet50v2": (25_568_360, 25_613_800),
    "resnet101v2": (44_577_896, 44_675_560),
    "resnet152v2": (60_236_904, 60_380_648),
    "densenet121": (7_978_856, 8_062_504),
    "mnist_googlenet": (97_298, 97_298),
    "mnist_resnet": (41_514, 41_514),
}

# (name, options, small input) covering every family and variant
CASES = [
    ("googlenet", {}, (3, 32, 32)),
    ("googlenet", {"layout": "torchvision"}, (3, 40, 40)),
    ("resnet18", {}, (3, 32, 32)),
    ("resnet50", {}, (3, 32, 32)),
    ("resnet18v2", {}, (3, 32, 32)),
    ("resnet50v2", {}, (3, 32, 32)),
    ("densenet121", {}, (3, 32, 32)),
    ("mnist_googlenet", {}, (1, 28, 28)),
    ("mnist_resnet", {}, (1, 28, 28)),
]
FULL_SIZE = ["googlenet", "resnet18", "resnet50v2", "densenet121"]


def _case_id(case):
    name, options, _ = case
    return name + "".join(f"-{k}={v}" for k, v in options.items())


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_spec_counts(name):
    counts = refnets.counts(refnets.get_spec(name))
    assert (counts.trainable, counts.total) == COUNTS[name]


def test_torchvision_googlenet_count():
    assert refnets.counts(refnets.get_spec("googlenet", layout="torchvision")).trainable == 6_624_904


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_native_counts(backend, case):
    name, options, shape = case
    model_spec = refnets.get_spec(name, input_shape=shape, **options)
    impl = backends.get(backend)
    expected = shapes.counts(model_spec)
    assert impl.count_params(impl.build(model_spec)) == (expected.trainable, expected.total)


def _agreement(model_spec, dtype, batch=2):
    """Worst relative error over every ordered backend pair, X's own init exported to Y."""
    nets = {b: backends.get(b).build(model_spec, dtype=dtype) for b in INSTALLED}
    own_init = {b: backends.get(b).get_weights(net) for b, net in nets.items()}  # before any copy
    x = seeded_input(model_spec.input_shape, batch=batch, dtype=dtype)
    errors = {}
    for source, target in itertools.permutations(INSTALLED, 2):
        exported = W.randomize_batchnorm(own_init[source], seed=11)
        for b in (source, target):
            backends.get(b).set_weights(nets[b], exported)
        ref, _ = backends.get(source).forward(nets[source], x)
        out, _ = backends.get(target).forward(nets[target], x)
        assert np.all(np.isfinite(out)) and out.shape == ref.shape
        errors[f"{source}->{target}"] = relative_error(out, ref)
    return errors


@pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_ordered_pair_agrees(case, dtype):
    name, options, shape = case
    errors = _agreement(refnets.get_spec(name, input_shape=shape, **options), dtype)
    assert max(errors.values()) <= TOLERANCE[dtype], errors


@pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends")
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_pairs_agree(name):
    errors = _agreement(refnets.get_spec(name), "float32", batch=1)
    assert max(errors.values()) <= TOLERANCE["float32"], errors


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet50v2", "resnet18v2", "mnist_resnet"])
def test_use_residual_false_drops_only_the_shortcuts(name):
    plain = refnets.get_spec(name, use_residual=False)
    full = refnets.get_spec(name)
    full_shapes, plain_shapes = refnets.param_shapes(full), refnets.param_shapes(plain)
    dropped = set(full_shapes) - set(plain_shapes)
    assert set(plain_shapes) <= set(full_shapes)
    assert all(".downsample" in k or ".0_conv" in k for k in dropped)  # projection shortcuts only
    assert all(plain_shapes[k] == full_shapes[k] for k in plain_shapes)
    assert not any(path.endswith(".shortcut") for path, _ in plain.walk())


@pytest.mark.parametrize("backend", backend_params())
def test_use_residual_false_changes_the_output(backend):
    impl = backends.get(backend)
    full = refnets.get_spec("mnist_resnet")
    plain = refnets.get_spec("mnist_resnet", use_residual=False)
    weights = W.init(full, seed=2)
    nets = [impl.build(s) for s in (full, plain)]
    impl.set_weights(nets[0], weights)
    impl.set_weights(nets[1], weights)  # no projections in this model: the same names
    x = seeded_input(full.input_shape)
    with_shortcut, without = (impl.forward(n, x)[0] for n in nets)
    assert relative_error(without, with_shortcut) > 1e-2


def _pool_model(*nodes):
    from refnets import spec as S

    return S.ModelSpec(name="pool", root=S.Sequential(children=tuple(nodes)), input_shape=(2, 6, 6))


@pytest.mark.parametrize("backend", backend_params())
def test_zero_pad_before_max_pool_is_not_the_pools_own_padding(backend):
    """ResNet50V2's stem: on negative activations a zero pad wins the border maxima,
    the pool's own padding never does. Every backend must keep them apart."""
    from refnets import spec as S
    from refnets.zoo.layers import maxpool

    impl = backends.get(backend)
    zero_padded = _pool_model(S.ZeroPad(name="pad", padding=(1, 1, 1, 1)), maxpool("pool", 3, 2))
    pool_padded = _pool_model(maxpool("pool", 3, 2, 1))
    x = -np.abs(seeded_input((2, 6, 6))) - 0.1
    a = impl.forward(impl.build(zero_padded), x)[0]
    b = impl.forward(impl.build(pool_padded), x)[0]
    assert a.shape == b.shape == (2, 2, 3, 3)
    assert np.all(a[:, :, 0, :] == 0.0)  # every top-row window reaches into the zero pad
    assert np.all(b < 0)
    stem = refnets.infer(refnets.get_spec("resnet50v2"))
    assert isinstance(stem["pool1_pad"].node, S.ZeroPad) and stem["pool1_pool"].node.padding == (0, 0, 0, 0)
