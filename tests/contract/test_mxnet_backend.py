"""The mxnet backend's own behaviour behind the contract: `stream` (captures
handed over while the forward runs, a few NDArrays behind it) and gradient
arrays allocated only when gradients are first needed."""

import time

import numpy as np
import pytest

pytest.importorskip("mxnet")
from conftest import seeded_input  # noqa: E402
from refnets import backends, shapes  # noqa: E402
from refnets import spec as S  # noqa: E402
from refnets import weights as W  # noqa: E402
from refnets.backends.mxnet import run, weights  # noqa: E402

IMPL = backends.get("mxnet")

# A conv applied again inside a Parallel branch (a Shared node: its target's
# first call is captured), nested Sequentials whose output is their last child's
# NDArray, a BatchNorm (running statistics: never trainable) and a dense head.
MODEL = S.ModelSpec(name="stream_case", input_shape=(3, 8, 8), root=S.Sequential(children=(
    S.Conv2d(name="conv", out_channels=3, kernel=(3, 3), padding=(1, 1, 1, 1)),
    S.Parallel(name="twin", merge="concat", branches=(
        S.Sequential(name="plain", children=(S.Activation(name="relu", kind="relu"),)),
        S.Sequential(name="again", children=(S.Activation(name="tanh", kind="tanh"),
                                             S.Shared(name="conv2", target="conv"))))),
    S.BatchNorm(name="bn"),
    S.Sequential(name="head", children=(S.GlobalAvgPool(name="pool"), S.Dense(name="fc", out_features=4))))))
PATHS = [path for path, _ in MODEL.walk()]


def _built():
    net = IMPL.build(MODEL, dtype="float64")
    IMPL.set_weights(net, W.init(MODEL, seed=4, dtype="float64"))
    return net


def _streamed(net, x, sink_delay=0.0, train=False):
    handed = []

    def sink(path, array):
        time.sleep(sink_delay)
        handed.append((path, array))

    out = IMPL.stream(net, x, PATHS + PATHS[:2], sink, train)  # repeated paths are captured once
    return out, handed


@pytest.mark.parametrize("window", [0, 4000, 20000, 1 << 40])  # bytes; the float64 input is 3 KiB
@pytest.mark.parametrize("train", [False, True])
def test_stream_hands_forwards_captures_once_each_in_execution_order(monkeypatch, window, train):
    net, x = _built(), seeded_input(MODEL.input_shape, dtype="float64")
    expected_out, captured = IMPL.forward(net, x, PATHS, train)
    monkeypatch.setattr(run, "WINDOW_BYTES", window)
    out, handed = _streamed(net, x, train=train)
    assert [path for path, _ in handed] == PATHS == list(captured)
    for path, array in handed:
        assert array.dtype == np.float64 and np.array_equal(array, captured[path]), path
    assert np.array_equal(out, expected_out)


@pytest.mark.filterwarnings("ignore:.*hybridized while still having forward hook")  # the test's own hook
@pytest.mark.parametrize("window", [0, 1 << 40])
def test_captures_reach_the_sink_while_the_forward_runs_within_the_window(monkeypatch, window):
    """Within a zero-byte window each node is handed over before the next one
    runs; an unbounded one holds them all until the forward has run."""
    net, x = _built(), seeded_input(MODEL.input_shape, dtype="float64")
    events = []
    last = run.blocks_at(net, ["head.fc"])["head.fc"]
    handle = last.register_forward_hook(lambda *_: events.append("head.fc ran"))
    monkeypatch.setattr(run, "WINDOW_BYTES", window)
    try:
        IMPL.stream(net, x, PATHS, lambda path, _array: events.append(path))
    finally:
        handle.detach()
    handed_before = events.index("head.fc ran")
    assert events[:handed_before] == (PATHS[:PATHS.index("head.fc")] if window == 0 else [])


def test_an_ndarray_several_paths_share_is_read_back_once_into_a_copy_nothing_writes_to():
    net, x = _built(), seeded_input(MODEL.input_shape, dtype="float64")
    _, handed = _streamed(net, x)
    arrays = dict(handed)
    assert arrays["twin.plain"] is arrays["twin.plain.relu"]  # a Sequential's output is its last child's
    assert arrays["head"] is arrays["head.fc"]
    kept = {path: array.copy() for path, array in arrays.items()}
    IMPL.forward(net, 2 * x, PATHS)
    IMPL.gradients(net, x, np.array([0, 3]), train=True)
    assert all(np.array_equal(arrays[path], kept[path]) for path in PATHS)


def test_a_sink_that_blocks_or_fails_leaves_the_model_as_it_was():
    net, x = _built(), seeded_input(MODEL.input_shape, dtype="float64")
    expected_out, captured = IMPL.forward(net, x, PATHS)
    out, handed = _streamed(net, x, sink_delay=0.02)
    assert [path for path, _ in handed] == PATHS and np.array_equal(out, expected_out)
    assert all(np.array_equal(array, captured[path]) for path, array in handed)

    def failing(path, _array):
        raise RuntimeError(f"sink full at {path}")
    with pytest.raises(RuntimeError, match="sink full"):
        IMPL.stream(net, x, PATHS, failing)
    assert net._active  # hybridized again, and no hook left behind to call the failing sink
    assert np.array_equal(IMPL.forward(net, x)[0], expected_out)
    assert IMPL.forward(net, x, ["bn"])[1]["bn"].shape == captured["bn"].shape


def _gradient_state(net):
    return {name: param.grad_req for name, param in weights.params_of(net).items()}


def test_a_built_net_holds_no_gradient_arrays_until_gradients_are_asked_for():
    net = _built()
    counts = shapes.counts(MODEL)
    assert set(_gradient_state(net).values()) == {"null"}
    with pytest.raises(RuntimeError):
        weights.params_of(net)["conv.weight"].grad()
    assert IMPL.count_params(net) == (counts.trainable, counts.total)
    x, labels = seeded_input(MODEL.input_shape, batch=3, dtype="float64"), np.array([0, 2, 1])
    IMPL.forward(net, x)  # the cached graph is built before the gradients exist
    grads = IMPL.gradients(net, x, labels)
    assert sorted(grads.params) == sorted(k for k in W.init(MODEL) if not k.startswith("bn.running"))
    state = _gradient_state(net)
    assert {name for name, req in state.items() if req == "null"} == {"bn.running_mean", "bn.running_var"}
    assert IMPL.count_params(net) == (counts.trainable, counts.total)
    # The same gradients as from a net whose every gradient array exists before its first forward.
    eager = _built()
    again = IMPL.gradients(eager, x, labels)
    assert again.loss == grads.loss and np.array_equal(again.input, grads.input)
    assert all(np.array_equal(again.params[k], g) for k, g in grads.params.items())


def test_a_trainer_allocates_the_gradients_it_steps_with():
    net = _built()
    x, labels = seeded_input(MODEL.input_shape, batch=3, dtype="float64"), np.array([0, 2, 1])
    IMPL.forward(net, x)
    before = IMPL.get_weights(net)
    trainer = IMPL.Trainer(net, "sgd", 0.5)
    losses = [trainer.step(x, labels) for _ in range(2)]
    after = IMPL.get_weights(net)
    assert losses[1] < losses[0]
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    assert moved == set(before)  # every weight, and the running statistics by the spec's rule
