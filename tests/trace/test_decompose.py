"""Decomposition of traced graphs into series-parallel specs, framework-free."""

import numpy as np
import pytest
from refnets import spec as S
from refnets.trace import INPUT, TracedGraph, TracedOp, UntraceableError, decompose


def conv(op_id, inputs, out=4, owner="", k=3):
    weights = {"weight": np.full((out, 4, k, k), 0.5, np.float32), "bias": np.zeros(out, np.float32)}
    node = S.Conv2d(out_channels=out, kernel=(k, k), padding=(k // 2,) * 4)
    return TracedOp(op_id, tuple(inputs), node=node, weights=weights, owner=owner)


def relu(op_id, inputs):
    return TracedOp(op_id, tuple(inputs), node=S.Activation(kind="relu"))


def merge(op_id, inputs, kind):
    return TracedOp(op_id, tuple(inputs), merge=kind)


def traced(ops, output=None):
    return decompose(TracedGraph(ops=ops, output=output or ops[-1].id, input_shape=(4, 8, 8), framework="test"))


def test_a_residual_block_is_a_parallel_add_with_an_identity_branch():
    result = traced([conv("stem", [INPUT]), conv("layer.conv1", ["stem"]), relu("layer.relu", ["layer.conv1"]),
                     conv("layer.conv2", ["layer.relu"]), merge("layer", ["layer.conv2", "stem"], "add"),
                     relu("out", ["layer"])])
    stem, block, out = result.spec.root.children
    assert isinstance(block, S.Parallel) and block.merge == "add" and block.name == "layer"
    body, skip = block.branches
    assert [c.name for c in body.children] == ["layer_conv1", "layer_relu", "layer_conv2"]
    assert isinstance(skip, S.Identity)
    assert sorted(result.weights) == ["layer.branch0.layer_conv1.bias", "layer.branch0.layer_conv1.weight",
                                      "layer.branch0.layer_conv2.bias", "layer.branch0.layer_conv2.weight",
                                      "stem.bias", "stem.weight"]
    assert result.origins["layer.branch0.layer_conv2"] == "layer.conv2"


def test_concat_keeps_the_order_of_the_merge_inputs_not_of_the_graph():
    result = traced([conv("a", [INPUT], out=2), conv("b", [INPUT], out=3), relu("c", [INPUT]),
                     merge("cat", ["c", "b", "a"], "concat")])
    (block,) = result.spec.root.children
    assert [branch.name for branch in block.branches] == ["c", "b", "a"]


def test_nested_forks_inside_a_branch():
    result = traced([conv("a", [INPUT]), conv("b1", ["a"]), conv("b2", ["a"]), merge("inner", ["b1", "b2"], "add"),
                     merge("outer", ["inner", INPUT], "add")])
    (outer,) = result.spec.root.children
    body, skip = outer.branches
    assert isinstance(skip, S.Identity)
    assert isinstance(body.children[1], S.Parallel) and body.children[1].name == "inner"


def test_a_reused_layer_has_one_weight_entry_and_shared_nodes():
    result = traced([conv("conv", [INPUT], owner="conv"), relu("r", [INPUT]), conv("conv_1", ["r"], owner="conv"),
                     merge("cat", ["conv", "conv_1"], "concat")])
    (block,) = result.spec.root.children
    first, second = block.branches
    assert isinstance(first, S.Conv2d)
    assert isinstance(second.children[1], S.Shared) and second.children[1].target == "cat.conv"
    assert sorted(result.weights) == ["cat.conv.bias", "cat.conv.weight"]


def test_a_reused_layer_with_other_settings_is_refused():
    other = conv("conv_1", [INPUT], owner="conv", k=1)
    with pytest.raises(UntraceableError, match="different settings"):
        traced([conv("conv", [INPUT], owner="conv"), other, merge("cat", ["conv", "conv_1"], "concat")])


def test_crossing_branches_are_not_series_parallel():
    ops = [conv("a", [INPUT]), conv("b", [INPUT]), merge("m1", ["a", "b"], "add"), conv("c", ["a"]),
           merge("m2", ["m1", "c"], "add")]
    with pytest.raises(UntraceableError, match="series-parallel"):
        traced(ops)


def test_dead_ops_are_ignored_and_inputs_must_come_first():
    result = traced([conv("a", [INPUT]), conv("unused", ["a"]), relu("r", ["a"])], output="r")
    assert [c.name for c in result.spec.root.children] == ["a", "r"]
    with pytest.raises(UntraceableError, match="not computed before"):
        traced([relu("r", ["later"]), relu("later", [INPUT])])


def test_weights_that_do_not_fit_the_spec_are_a_tracer_bug():
    bad = conv("a", [INPUT])
    bad.weights["weight"] = np.zeros((4, 4, 1, 1), np.float32)
    with pytest.raises(UntraceableError, match="do not fit"):
        traced([bad])
