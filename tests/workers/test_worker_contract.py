"""The Backend contract through a worker process agrees exactly with the same
backend in this process: forward (with every node captured, in inference and
training mode), stream (the same nodes, in the same order), gradients, optimiser
steps, weights both ways, counts; the protocol's arrays are the safetensors
format; errors come back as their classes; nets are freed in the worker when
their handles go."""

import gc
import importlib
import importlib.util
import os
import signal

import numpy as np
import pytest
import refnets
from parity.engine.localise import capture_paths
from refnets import spec as S
from refnets import weights as W
from refnets.backends import catalog
from refnets.workers import BackendFailure, WorkerBackend, WorkerError, protocol
from refnets.zoo.layers import bn, conv, maxpool, relu, seq
from refnets.zoo.resnet import residual

from conftest import seeded_input

IN_PROCESS = [name for name, record in catalog.BACKENDS.items()
              if importlib.util.find_spec(record.framework) is not None]
# BatchNorm, a residual add, pooling, a dense head: every kind of state and shape, small.
SPEC = S.ModelSpec(name="tiny_residual", input_shape=(3, 12, 12), root=seq(
    "", conv("conv1", 8, 3, padding=1, bias=False), bn("bn1"), relu("relu1"),
    residual("block", seq("body", conv("conv", 8, 3, padding=1, bias=False), bn("bn")), S.Identity(name="shortcut"),
             True),
    maxpool("pool", 2, 2), S.Flatten(name="flatten"), S.Dense(name="fc", out_features=10)))


def local_backend(name):
    """The backend in this process, whatever worker configuration the environment has."""
    return importlib.import_module(catalog.BACKENDS[name].package).BACKEND


@pytest.fixture(scope="module")
def pair(request):
    name = request.param
    remote = WorkerBackend(name, os.sys.executable, "test")
    yield local_backend(name), remote
    remote.close()


def equal_maps(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def built(backend, canonical, dtype="float64"):
    net = backend.build(SPEC, dtype=dtype)
    backend.set_weights(net, canonical)
    return net


@pytest.mark.parametrize("pair", IN_PROCESS, indirect=True)
def test_the_contract_through_a_worker_agrees_exactly(pair):
    local, remote = pair
    canonical = W.randomize_batchnorm(W.init(SPEC, seed=3, dtype="float64"), seed=4)
    nets = [built(local, canonical), built(remote, canonical)]
    x, labels = seeded_input(SPEC.input_shape, batch=4, dtype="float64"), np.array([1, 7, 3, 0])
    assert local.count_params(nets[0]) == remote.count_params(nets[1])
    equal_maps(remote.get_weights(nets[1]), local.get_weights(nets[0]))
    paths = capture_paths(SPEC)
    for train in (False, True):
        (out_l, acts_l), (out_r, acts_r) = [b.forward(n, x, capture=paths, train=train)
                                            for b, n in zip((local, remote), nets)]
        np.testing.assert_array_equal(out_r, out_l)
        equal_maps(acts_r, acts_l)
        streamed = [[], []]
        outs = [b.stream(n, x, paths, lambda path, act, got=got: got.append((path, act)), train=train)
                for b, n, got in zip((local, remote), nets, streamed)]
        np.testing.assert_array_equal(outs[1], outs[0])
        assert [path for path, _ in streamed[1]] == [path for path, _ in streamed[0]]  # the same order
        equal_maps(dict(streamed[1]), acts_l)
    equal_maps(remote.get_weights(nets[1]), canonical)  # forward(train=True) left the statistics alone
    g_l, g_r = [b.gradients(n, x, labels, train=True) for b, n in zip((local, remote), nets)]
    assert g_r.loss == g_l.loss
    np.testing.assert_array_equal(g_r.logits, g_l.logits)
    np.testing.assert_array_equal(g_r.input, g_l.input)
    equal_maps(g_r.params, g_l.params)
    trainers = [b.Trainer(n, "momentum", 0.01, 0.9) for b, n in zip((local, remote), nets)]
    for _ in range(2):
        losses = [t.step(x, labels) for t in trainers]
        assert losses[0] == losses[1]
    equal_maps(remote.get_weights(nets[1]), local.get_weights(nets[0]))
    assert remote.capabilities == tuple(local.capabilities)
    assert remote.missing_converters() == local.missing_converters()
    assert local.versions().items() <= remote.versions().items()


@pytest.mark.parametrize("pair", ["numpy"], indirect=True)
def test_errors_come_back_as_their_classes(pair):
    _, remote = pair
    net = remote.build(refnets.get_spec("lenet"))
    with pytest.raises(KeyError, match="no node") as caught:
        remote.forward(net, seeded_input((1, 28, 28)), capture=["no_such_node"])
    assert isinstance(caught.value, WorkerError) and "KeyError" in caught.value.remote_type
    with pytest.raises(refnets.WeightMismatchError):
        remote.set_weights(net, {"conv1.weight": np.zeros((6, 1, 5, 5), np.float32)})
    with pytest.raises(ValueError, match="optimizer"):
        remote.Trainer(net, "adam", 0.1)
    with pytest.raises(refnets.InputTooSmallError):  # the spec is checked in the worker too
        remote.build(refnets.get_spec("lenet", input_shape=(1, 4, 4)))


@pytest.mark.parametrize("pair", ["numpy"], indirect=True)
def test_nets_are_freed_in_the_worker_when_their_handles_go(pair):
    _, remote = pair
    gc.collect()  # handles of earlier tests that are garbage go now, not in the middle of this count
    held = remote.request(None, "ping")[0]["held"]
    nets = [remote.build(refnets.get_spec("lenet")) for _ in range(3)]
    trainer = remote.Trainer(nets[0], "sgd", 0.1)
    assert remote.request(None, "ping")[0]["held"] == held + 4
    del nets
    gc.collect()
    assert remote.request(None, "ping")[0]["held"] == held + 2  # the trainer, and the net it keeps
    del trainer
    gc.collect()
    assert remote.request(None, "ping")[0]["held"] == held


def test_a_killed_worker_fails_its_nets_and_a_new_one_starts():
    remote = WorkerBackend("numpy", os.sys.executable, "test")
    try:
        net = remote.build(refnets.get_spec("lenet"))
        os.kill(remote.request(None, "ping")[0]["pid"], signal.SIGKILL)
        with pytest.raises(BackendFailure, match="killed by SIGKILL during 'forward'"):
            remote.forward(net, seeded_input((1, 28, 28)))
        fresh = remote.build(refnets.get_spec("lenet"))  # a new worker
        assert remote.forward(fresh, seeded_input((1, 28, 28)))[0].shape == (2, 10)
        with pytest.raises(BackendFailure, match="SIGKILL"):
            remote.forward(net, seeded_input((1, 28, 28)))
    finally:
        remote.close()


def test_the_arrays_are_the_safetensors_format():
    from safetensors.numpy import load, save

    arrays = {"f64": np.arange(6.0).reshape(2, 3), "f32": np.float32(1.5) * np.ones((1, 2, 2), np.float32),
              "scalar": np.array(2.0, np.float32), "labels": np.array([3, 1]), "empty": np.zeros((0, 4), np.float32),
              "strided": np.arange(10.0)[::3]}
    size, parts = protocol.safetensors_parts(arrays)
    blob = b"".join(bytes(part) for part in parts)
    assert len(blob) == size
    for theirs, name in ((load(blob), "written here, read by safetensors"),
                         (protocol.load_safetensors(bytearray(save({k: np.ascontiguousarray(v) if v.ndim else v
                                                                    for k, v in arrays.items()}))), "the other way")):
        assert sorted(theirs) == sorted(arrays), name
        for key, value in arrays.items():
            assert theirs[key].dtype == value.dtype and theirs[key].shape == value.shape, (name, key)
            np.testing.assert_array_equal(theirs[key], value)


def test_a_net_of_a_closed_worker_says_so():
    remote = WorkerBackend("numpy", os.sys.executable, "test")
    net = remote.build(refnets.get_spec("lenet"))
    remote.close()
    with pytest.raises(BackendFailure, match="closed"):
        remote.count_params(net)
    remote.close()
