"""One native reader per framework (`backends.get_reader`): it reads any native
model of its framework, ours included, so our own built models must read back as
the spec's parameterised nodes, with the backend's weights in the slots."""

import numpy as np
import pytest
import refnets
from refnets import backends, rules
from refnets import weights as W
from refnets.backends import catalog

from conftest import TOLERANCE, relative_error, seeded_input

READERS = [pytest.param(name, marks=pytest.mark.skipif(not backends.is_installed(name), reason=f"{name} missing"))
           for name in catalog.frameworks_with("read")]


@pytest.mark.parametrize("name", READERS)
def test_a_reader_reads_our_own_model_as_the_spec(name):
    spec = refnets.get_spec("resnet18", input_shape=(3, 32, 32))
    impl, reader = backends.get(name), backends.get_reader(name)
    net = impl.build(spec)
    weights = W.init(spec, seed=3)
    impl.set_weights(net, weights)
    x = seeded_input(spec.input_shape)
    expected = {path: rules.kind(node) for path, node in spec.walk() if rules.has_params(node)}
    for given in (None, x):  # registration (Keras: topological) order, execution order
        found = reader.layers(net, given)
        assert {layer.name: layer.kind for layer in found} == expected and len(found) == len(expected)
        for layer in found:
            for role, slot in layer.slots.items():
                assert np.array_equal(slot.read(), weights[f"{layer.name}.{role}"]), (layer.name, role)
    out, captured = reader.forward(net, x, ["conv1", "fc"])
    assert relative_error(out, impl.forward(net, x)[0]) <= TOLERANCE["float32"]  # eager vs compiled: rounding
    assert np.array_equal(captured["fc"][1], out) and captured["conv1"][0].shape[1:] in ((3, 32, 32), (3, 38, 38))


@pytest.mark.parametrize("name", READERS)
def test_the_reader_writes_through_its_slots_all_or_nothing(name):
    spec = refnets.get_spec("lenet")
    impl, reader = backends.get(name), backends.get_reader(name)
    net = impl.build(spec)
    before = impl.get_weights(net)
    bias = np.full(before["fc3.bias"].shape, 0.5, before["fc3.bias"].dtype)
    with pytest.raises(refnets.native.PortModelError, match="shape"):
        reader.set_params(net, {"fc3": {"bias": bias}, "conv1": {"weight": np.zeros((1, 1, 1, 1), "float32")}})
    assert np.array_equal(impl.get_weights(net)["fc3.bias"], before["fc3.bias"])  # nothing written
    reader.set_params(net, {"fc3": {"bias": bias}})
    assert np.array_equal(impl.get_weights(net)["fc3.bias"], bias)


@pytest.mark.parametrize("name", [p for p in READERS if p.values[0] in ("torch", "keras")])
def test_the_graph_inputs_of_each_layer_are_read(name):
    """Torch (torch.fx) and Keras (the functional graph) say which layers feed each
    layer; a residual block's add is followed through to both producers."""
    spec = refnets.get_spec("lenet")
    net = backends.get(name).build(spec)
    found = {layer.name: layer.inputs for layer in backends.get_reader(name).layers(net)}
    assert all(inputs for inputs in found.values()), found
    if name == "torch":  # through the parameter-free activations and pools
        assert found["conv1"] == ("<input>",) and found["conv2"] == ("conv1",) and found["fc1"] == ("conv2",)
    else:  # Keras: the immediate producers (a pad layer, a pool)
        assert found["conv1"] == ("conv1_pad",) and found["conv2"] == ("pool1",), found
