"""The vocabulary added for traced models, from the spec alone: TensorFlow's 'same'
padding, GlobalAvgPool keepdims, softmax, and a layer shared by two places."""

import pytest
from refnets import rules, shapes
from refnets import spec as S
from refnets import weights as W


def _seq(*nodes, input_shape=(3, 8, 8)) -> S.ModelSpec:
    return S.ModelSpec(name="m", root=S.Sequential(children=tuple(nodes)), input_shape=input_shape)


# ------------------------------------------------------------------ 'same' padding


@pytest.mark.parametrize("size,kernel,stride,dilation,expected", [
    (224, 7, 2, 1, (2, 3)),  # ResNet's stem in TensorFlow: 112 outputs
    (5, 3, 2, 1, (1, 1)),
    (6, 3, 2, 1, (0, 1)),
    (7, 1, 2, 1, (0, 0)),  # a 1x1 strided conv never pads
    (9, 3, 1, 2, (2, 2)),  # dilated: a span of 5
    (10, 4, 3, 1, (1, 2)),  # ceil(10/3) = 4 outputs: total 3*3 + 4 - 10 = 3
    (3, 5, 4, 1, (1, 1)),  # a kernel larger than the input
])
def test_same_padding_is_tensorflows_rule(size, kernel, stride, dilation, expected):
    assert rules.same_padding(size, kernel, stride, dilation) == expected


def test_resolve_padding_per_axis_and_numbers_unchanged():
    conv = S.Conv2d(out_channels=4, kernel=(7, 3), stride=(2, 2), padding=S.SAME)
    assert rules.resolve_padding(conv, (224, 6)) == (2, 3, 0, 1)
    assert rules.resolve_padding(S.MaxPool(kernel=(3, 3), stride=(2, 2), padding=S.SAME), (5, 6)) == (1, 1, 0, 1)
    numeric = S.Conv2d(out_channels=4, kernel=(3, 3), padding=(1, 0, 2, 3))
    assert rules.resolve_padding(numeric, (224, 224)) == (1, 0, 2, 3)
    assert rules.with_resolved_padding(numeric, (9, 9)) is numeric
    assert rules.with_resolved_padding(conv, (224, 6)).padding == (2, 3, 0, 1)


@pytest.mark.parametrize("h,w", [(224, 224), (9, 10), (1, 1), (13, 6)])
def test_same_outputs_ceil_of_size_over_stride(h, w):
    conv = S.Conv2d(name="c", out_channels=4, kernel=(7, 3), stride=(2, 3), dilation=(1, 2), padding=S.SAME)
    pools = [S.MaxPool(name="m", kernel=(3, 2), stride=(2, 2), padding=S.SAME),
             S.AvgPool(name="a", kernel=(3, 3), stride=(3, 1), padding=S.SAME, count_include_pad=False)]
    for node in [conv] + pools:
        (_, oh, ow) = shapes.output_shape(_seq(node, input_shape=(3, h, w)))
        assert (oh, ow) == (-(-h // node.stride[0]), -(-w // node.stride[1])), node


def test_same_avgpool_divisors_count_only_the_input_without_include_pad():
    node = S.AvgPool(kernel=(3, 3), stride=(2, 2), padding=S.SAME, count_include_pad=False)
    # size 6: padding (0, 1) per axis; the last window holds 2 input rows and 1 of padding
    assert shapes.avgpool_divisors(node, (6, 6)).tolist() == [[9, 9, 6], [9, 9, 6], [6, 6, 4]]
    counted = S.AvgPool(kernel=(3, 3), stride=(2, 2), padding=S.SAME)
    assert shapes.avgpool_divisors(counted, (6, 6)).tolist() == [[9] * 3] * 3
    assert shapes.pool_window_padding(node, (6, 6)) == (0, 1, 0, 1)


# -------------------------------------------------------- keepdims, softmax, kinds


def test_global_avg_pool_keepdims_and_softmax_shapes():
    model = _seq(S.GlobalAvgPool(name="g", keepdims=True), S.Activation(name="s", kind="softmax"),
                 S.Flatten(name="f"), S.Activation(name="v", kind="softmax"))
    infos = shapes.infer(model)
    assert infos["g"].out_shape == (3, 1, 1) and infos["s"].out_shape == (3, 1, 1) and infos["v"].out_shape == (3,)
    assert shapes.output_shape(_seq(S.GlobalAvgPool(name="g"))) == (3,)
    assert rules.kind(S.Shared(target="x")) == "shared" and not rules.has_params(S.Shared(target="x"))


# ---------------------------------------------------------------------- Shared


def _shared_model(second_input=None) -> S.ModelSpec:
    """A conv applied in both branches of a concat; `second_input`: a node put
    before the second use (changing its input)."""
    again = (S.Shared(name="again", target="twin.conv"),)
    if second_input is not None:
        again = (second_input,) + again
    twin = S.Parallel(name="twin", branches=(
        S.Conv2d(name="conv", out_channels=5, kernel=(3, 3), padding=(1, 1, 1, 1)),
        S.Sequential(name="other", children=again)))
    return _seq(twin, S.Flatten(name="f"), S.Dense(name="fc", out_features=4))


def test_a_shared_layer_has_its_targets_shape_weights_once_and_work_twice():
    model = _shared_model()
    infos = shapes.infer(model)
    assert infos["twin.other.again"].out_shape == infos["twin.conv"].out_shape == (5, 8, 8)
    assert infos["twin"].out_shape == (10, 8, 8)
    assert infos["twin.other.again"].target is infos["twin.conv"]
    params = shapes.param_shapes(model)
    assert sorted(params) == ["fc.bias", "fc.weight", "twin.conv.bias", "twin.conv.weight"]
    assert sorted(W.init(model)) == sorted(params)
    conv_macs = shapes.node_macs(infos["twin.conv"])
    assert conv_macs == 5 * 8 * 8 * 3 * 3 * 3
    assert shapes.node_macs(infos["twin.other.again"]) == conv_macs
    counts = shapes.counts(model)
    assert counts.trainable == 5 * 3 * 9 + 5 + 4 * 640 + 4
    assert counts.macs == 2 * conv_macs + 640 * 4


def test_a_shared_node_with_a_wrong_target_fails_naming_it():
    for target in ("twin.nope", "twin.other", "f"):  # missing, a container, no parameters
        root = S.replace(_shared_model().root, "twin.other.again", lambda n: S.Shared(name="again", target=target))
        with pytest.raises(ValueError, match=rf"shared node 'twin.other.again': its target '{target}'"):
            S.ModelSpec(name="m", root=root, input_shape=(3, 8, 8))
    later = S.Sequential(children=(S.Shared(name="early", target="late"), S.Dense(name="late", out_features=3)))
    with pytest.raises(ValueError, match="shared node 'early': its target 'late' is not a parameterised layer "
                                         "that runs before it"):
        S.ModelSpec(name="m", root=later, input_shape=(3,))


def test_a_shared_node_with_another_input_shape_fails_naming_both_paths():
    model = _shared_model(second_input=S.MaxPool(name="pool", kernel=(2, 2), stride=(2, 2)))
    with pytest.raises(ValueError, match=r"shared node 'twin.other.again' gets input shape \(3, 4, 4\), but its "
                                         r"target 'twin.conv' takes \(3, 8, 8\)"):
        shapes.infer(model)
    same_shape = _shared_model(second_input=S.Activation(name="act", kind="softmax"))
    assert shapes.output_shape(same_shape) == (4,)
