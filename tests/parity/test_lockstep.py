"""The localisation compares node by node while the backends run side by side
(`parity.engine.lockstep`): the same verdicts as comparing whole captures, what is
held stays within the window when the backends run the nodes in the same order,
other orders and failures end without a deadlock."""

import threading
import time

import numpy as np
import pytest

import refnets
from refnets import backends as B
from parity.engine.localise import capture_paths, localise
from parity.engine.lockstep import NodeRendezvous
from parity.engine.sidebyside import run_side_by_side

PATHS = [f"n{i}" for i in range(40)]
NODE = np.ones((256, 256), np.float32)  # 256 KiB a node


def _values(party_offset: float):
    return {p: NODE * (i + 1) + party_offset for i, p in enumerate(PATHS)}


def _finished(rendezvous, name, error):
    rendezvous.finish(name, failed=error is not None)
    if error is None:
        rendezvous.help_until_the_others_end(name)


def _run(rendezvous, orders, fail=(), sleep=None):
    def job(name, order):
        def run():
            values = _values(1e-3 if name == "bad" else 0.0)
            for index, path in enumerate(order):
                if name in fail and index == len(order) // 2:
                    raise RuntimeError(f"{name} broke")
                if sleep and name in sleep:
                    time.sleep(sleep[name])
                rendezvous.deposit(name, path, values[path].copy())
        return run

    done = threading.Event()
    errors = []

    def target():
        try:
            run_side_by_side({n: job(n, o) for n, o in orders.items()},
                             on_done=lambda n, e: _finished(rendezvous, n, e))
        except RuntimeError as err:
            errors.append(err)
        done.set()

    threading.Thread(target=target, daemon=True).start()
    assert done.wait(30), "the side-by-side run did not end (deadlock?)"
    return errors


def test_same_order_compares_every_node_and_holds_only_the_lag():
    window = 4 * NODE.nbytes
    rendezvous = NodeRendezvous(["ref", "good", "bad"], "ref", PATHS, rtol=1e-6, atol=0.0, window=window)
    assert _run(rendezvous, {n: PATHS for n in ("ref", "good", "bad")}, sleep={"ref": 0.005}) == []
    assert rendezvous.compared_all("good") and rendezvous.compared_all("bad")
    assert all(c.passed for c in rendezvous.results["good"].values())
    assert not any(c.passed for c in rendezvous.results["bad"].values())
    # The slow reference holds back the others: never more than each one's window and a node.
    assert rendezvous.peak_held <= 3 * (window + NODE.nbytes)
    assert rendezvous.peak_held < len(PATHS) * NODE.nbytes


def test_the_thread_behind_leaves_its_nodes_to_the_thread_ahead():
    """The slow party completes every node; the fast one, ahead, compares them."""
    rendezvous = NodeRendezvous(["ref", "slow"], "ref", PATHS, rtol=1e-6, atol=0.0, window=4 * NODE.nbytes)
    compared_by = []
    compare = rendezvous.comparisons.compare
    rendezvous.comparisons.compare = lambda out, ref: compared_by.append(threading.current_thread().name) or \
        compare(out, ref)
    assert _run(rendezvous, {n: PATHS for n in ("ref", "slow")}, sleep={"slow": 0.005}) == []
    assert rendezvous.compared_all("slow") and len(compared_by) == len(PATHS)
    # Only the nodes still to come when the fast one has ended (one window's) are the slow one's.
    assert compared_by.count("parity-slow") <= 5
    assert rendezvous.peak_held <= 2 * (4 * NODE.nbytes + NODE.nbytes) + 4 * NODE.nbytes


def test_other_orders_do_not_deadlock():
    rendezvous = NodeRendezvous(["ref", "good"], "ref", PATHS, rtol=1e-6, atol=0.0, window=NODE.nbytes)
    assert _run(rendezvous, {"ref": PATHS, "good": PATHS[::-1]}) == []
    assert rendezvous.compared_all("good")
    assert all(c.passed for c in rendezvous.results["good"].values())


def test_a_failed_backend_drops_out_and_a_failed_reference_ends_the_comparison():
    rendezvous = NodeRendezvous(["ref", "good", "bad"], "ref", PATHS, rtol=1e-6, atol=0.0, window=NODE.nbytes)
    errors = _run(rendezvous, {n: PATHS for n in ("ref", "good", "bad")}, fail={"bad"})
    assert [str(e) for e in errors] == ["bad broke"]
    assert rendezvous.compared_all("good") and not rendezvous.compared_all("bad")
    rendezvous = NodeRendezvous(["ref", "good"], "ref", PATHS, rtol=1e-6, atol=0.0, window=NODE.nbytes)
    errors = _run(rendezvous, {n: PATHS for n in ("ref", "good")}, fail={"ref"})
    assert [str(e) for e in errors] == ["ref broke"]
    assert not rendezvous.compared_all("good")


def test_a_node_not_asked_for_is_refused():
    rendezvous = NodeRendezvous(["ref", "good"], "ref", PATHS, rtol=1e-6, atol=0.0)
    with pytest.raises(KeyError, match="not asked for"):
        rendezvous.deposit("good", "elsewhere", NODE)


def test_the_same_memory_handed_in_twice_in_a_row_is_compared_once():
    rendezvous = NodeRendezvous(["ref", "out"], "ref", PATHS[:2], rtol=1e-6, atol=0.0)
    a, b = NODE.copy(), NODE.copy()
    for path in PATHS[:2]:  # a Sequential and its last child: the same arrays
        rendezvous.deposit("ref", path, a)
        rendezvous.deposit("out", path, b)
    for party in ("ref", "out"):
        rendezvous.finish(party)
    first, second = (rendezvous.results["out"][p] for p in PATHS[:2])
    assert first is second


def test_parity_run_localises_as_whole_captures_do():
    """numpy against itself with a slightly different weight: the node-by-node
    verdicts equal those of comparing the two backends' whole captures."""
    spec = refnets.get_spec("lenet")
    impl = B.get("numpy")
    net_a, net_b = impl.build(spec), impl.build(spec)
    weights = impl.get_weights(net_a)
    name = next(k for k in weights if k.endswith("weight") and "conv2" in k)
    changed = dict(weights, **{name: weights[name] * (1 + 1e-3)})
    impl.set_weights(net_b, changed)
    x = np.random.default_rng(0).standard_normal((2,) + tuple(spec.input_shape)).astype(np.float32)
    paths = capture_paths(spec)
    _, ref = impl.forward(net_a, x, capture=paths)
    _, out = impl.forward(net_b, x, capture=paths)
    whole = localise(spec, ref, out, 1e-5, 1e-6)
    rendezvous = NodeRendezvous(["a", "b"], "a", paths, 1e-5, 1e-6)
    run_side_by_side({"a": lambda: impl.stream(net_a, x, paths, rendezvous.sink("a")),
                      "b": lambda: impl.stream(net_b, x, paths, rendezvous.sink("b"))},
                     on_done=lambda n, e: rendezvous.finish(n, failed=e is not None))
    assert rendezvous.compared_all("b")
    streamed = [rendezvous.results["b"][p] for p in paths]
    assert [c.passed for c in streamed] == [n.comparison.passed for n in whole.nodes]
    assert [c.max_abs for c in streamed] == [n.comparison.max_abs for n in whole.nodes]
    assert whole.first_divergent is not None and whole.first_divergent.path.startswith("conv2")
