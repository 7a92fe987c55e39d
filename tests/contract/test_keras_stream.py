"""The Keras backend's eager executor (refnets/backends/keras/execute.py): `stream`
hands every node over in the spec's order, equal to `forward(capture=...)`; the
executor drops each intermediate tensor once nothing needs it; a training-mode
stream leaves the moving statistics alone; a slow sink only slows it down; and a
model's first plain forward (eager) equals the later ones (compiled)."""

import queue
import threading
import time
import weakref

import numpy as np
import pytest
from refnets import spec as S
from refnets import weights as W

from conftest import INSTALLED, seeded_input

pytestmark = pytest.mark.skipif("keras" not in INSTALLED, reason="keras is not installed")


def _conv(name, **kw):
    return S.Conv2d(name=name, **{**dict(out_channels=4, kernel=(3, 3)), **kw})


# Padding helpers (a padded conv, a padded max pool), BatchNorm, an add and a
# concat Parallel, a Shared conv, a Flatten after a feature map (the transpose helper).
MODEL = S.ModelSpec(name="stream_case", input_shape=(4, 9, 9), root=S.Sequential(children=(
    _conv("c", padding=(1, 1, 1, 1)),
    S.BatchNorm(name="bn"),
    S.Activation(name="r", kind="relu"),
    S.MaxPool(name="p", kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1)),
    S.Parallel(name="res", merge="add", branches=(
        S.Sequential(name="body", children=(_conv("c", padding=(1, 1, 1, 1)), S.BatchNorm(name="bn"))),
        S.Identity(name="skip"))),
    S.Parallel(name="cat", branches=(_conv("a", kernel=(1, 1)), S.Shared(name="again", target="res.body.c"))),
    S.Flatten(name="f"),
    S.Dense(name="d", out_features=5),
)))
PATHS = [path for path, _ in MODEL.walk()]


@pytest.fixture(scope="module")
def keras_net():
    from refnets import backends

    backend = backends.get("keras")
    net = backend.build(MODEL, "float32")
    backend.set_weights(net, W.init(MODEL, seed=3, dtype="float32"))
    return backend, net


def _streamed(backend, net, x, capture, train=False, sink=None):
    got = []
    out = backend.stream(net, x, capture, sink or (lambda path, array: got.append((path, array))), train)
    return out, got


def test_the_build_records_each_node_s_layers_helpers_included(keras_net):
    from refnets.backends.keras.build import bindings_of

    steps = bindings_of(keras_net[1]).steps
    names = {path: [layer.name for layer in steps[path]] for path in ("c", "p", "f", "res.skip", "cat")}
    assert names == {"c": ["c_pad", "c"], "p": ["p_pad", "p"], "f": ["f_chw", "f"], "res.skip": [], "cat": ["cat"]}
    assert steps["cat.again"] == steps["res.body.c"]  # the same layer objects


def test_stream_hands_every_node_in_spec_order_equal_to_forward_capture(keras_net):
    backend, net = keras_net
    x = seeded_input(MODEL.input_shape)
    out, acts = backend.forward(net, x, capture=PATHS)
    streamed_out, got = _streamed(backend, net, x, PATHS[::-1] + PATHS)  # any order, duplicates: once, in spec order
    assert [path for path, _ in got] == PATHS
    np.testing.assert_array_equal(streamed_out, out)
    for path, array in got:
        np.testing.assert_array_equal(array, acts[path], err_msg=path)
    assert got[PATHS.index("f")][1].shape == (2, 8 * 5 * 5) and got[PATHS.index("cat")][1].shape == (2, 8, 5, 5)
    np.testing.assert_array_equal(acts[""], out)


def test_stream_of_some_nodes_and_an_unknown_one(keras_net):
    backend, net = keras_net
    x = seeded_input(MODEL.input_shape)
    _, got = _streamed(backend, net, x, ["d", "cat.again", "res"])
    assert [path for path, _ in got] == ["res", "cat.again", "d"]
    with pytest.raises(KeyError, match="nope"):
        backend.stream(net, x, ["nope"], lambda path, array: None)


def test_a_training_mode_stream_leaves_the_moving_statistics_alone(keras_net):
    backend, net = keras_net
    x = seeded_input(MODEL.input_shape)
    before = backend.get_weights(net)
    out, got = _streamed(backend, net, x, PATHS, train=True)
    after = backend.get_weights(net)
    assert all(np.array_equal(before[name], after[name]) for name in before)
    train_out, acts = backend.forward(net, x, capture=PATHS, train=True)
    np.testing.assert_array_equal(out, train_out)
    assert not np.allclose(train_out, backend.forward(net, x)[0])  # batch statistics, not the moving ones
    for path, array in got:
        np.testing.assert_array_equal(array, acts[path], err_msg=path)


def test_a_blocking_sink_on_another_thread_gets_every_node_unchanged(keras_net):
    """Back-pressure: the sink waits until a consumer thread takes each array
    (a queue of one), sleeping now and then; every array is as it was handed over."""
    backend, net = keras_net
    x = seeded_input(MODEL.input_shape, seed=4)
    handed = queue.Queue(maxsize=1)
    taken = []

    def consume():
        while (item := handed.get()) is not None:
            taken.append((item[0], item[1], item[1].copy()))
            time.sleep(0.01)

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        out = backend.stream(net, x, PATHS, lambda path, array: handed.put((path, array)))
    finally:
        handed.put(None)
        consumer.join()
    _, acts = backend.forward(net, x, capture=PATHS)
    assert [path for path, _, _ in taken] == PATHS
    for path, array, copy in taken:
        np.testing.assert_array_equal(array, copy, err_msg=path)
        np.testing.assert_array_equal(array, acts[path], err_msg=path)
    np.testing.assert_array_equal(out, acts[""])


def test_the_executor_drops_each_tensor_once_nothing_needs_it(keras_net):
    from refnets.backends.keras import execute
    from refnets.backends.keras.build import bindings_of

    bindings = bindings_of(keras_net[1])
    tensors, most_alive = [], [0]

    def visit(path, tensor):
        tensors.append((path, weakref.ref(tensor)))
        most_alive[0] = max(most_alive[0], sum(ref() is not None for _, ref in tensors))

    import tensorflow as tf

    batch = tf.constant(np.transpose(seeded_input(MODEL.input_shape), (0, 2, 3, 1)))
    out = execute.run(bindings, batch, False, visit)
    alive = [path for path, ref in tensors if ref() is not None]
    assert alive == ["d", ""] and tensors[-1][1]() is out
    assert most_alive[0] <= 4  # the widest point: a Parallel's input, its branch outputs, the merge


@pytest.mark.parametrize("train", [False, True])
def test_the_first_plain_forward_runs_eagerly_and_equals_the_compiled_ones(train):
    from refnets import backends
    from refnets.backends.keras.build import bindings_of

    backend = backends.get("keras")
    net = backend.build(MODEL, "float32")
    backend.set_weights(net, W.init(MODEL, seed=5, dtype="float32"))
    x = seeded_input(MODEL.input_shape, seed=6)
    first, _ = backend.forward(net, x, train=train)
    assert bindings_of(net).compiled == {}  # no tracing on the first call
    later = [backend.forward(net, x, train=train)[0] for _ in range(2)]
    assert set(bindings_of(net).compiled) == {train}
    np.testing.assert_array_equal(later[0], later[1])
    scale = float(np.max(np.abs(later[0])))
    assert float(np.max(np.abs(first - later[0]))) <= 4 * np.finfo(np.float32).eps * scale
