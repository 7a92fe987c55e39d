"""Spec, registry, shapes and weight files: no framework needed."""

import subprocess
import sys

import numpy as np
import pytest
import refnets
from refnets import shapes
from refnets import spec as S
from refnets import weights as W
from refnets.zoo.layers import avgpool, maxpool

TRAINABLE = {
    "lenet": 61_706,
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "nin": 1_992_166,
}


@pytest.mark.parametrize("name,expected", sorted(TRAINABLE.items()))
def test_trainable_params_match_the_published_counts(name, expected):
    counts = refnets.counts(refnets.get_spec(name))
    assert counts.trainable == expected
    assert counts.total == expected  # no BatchNorm in these


def test_total_count_includes_batchnorm_statistics():
    plain = refnets.counts(refnets.get_spec("vgg11"))
    with_bn = refnets.counts(refnets.get_spec("vgg11", batch_norm=True))
    bn_channels = 64 + 128 + 2 * 256 + 4 * 512
    assert with_bn.trainable == plain.trainable + 2 * bn_channels
    assert with_bn.total == plain.total + 4 * bn_channels


def test_output_shapes_and_macs():
    lenet = refnets.get_spec("lenet")
    assert refnets.output_shape(lenet) == (10,)
    infos = refnets.infer(lenet)
    assert infos["pool2"].out_shape == (16, 5, 5)
    assert refnets.counts(lenet).macs == 416_520
    assert refnets.output_shape(refnets.get_spec("alexnet", num_classes=7)) == (7,)
    assert refnets.infer(refnets.get_spec("alexnet"))["features.pool5"].out_shape == (256, 6, 6)


def test_options_change_the_spec():
    assert refnets.get_spec("lenet", in_channels=3).input_shape == (3, 28, 28)
    assert refnets.param_shapes(refnets.get_spec("nin", num_classes=5))["block4.mlp2.weight"] == (5, 5, 1, 1)


def test_too_small_input_names_the_node():
    with pytest.raises(refnets.InputTooSmallError, match=r"features\.pool5"):
        refnets.infer(refnets.get_spec("alexnet", input_shape=(3, 32, 32)))


def test_unknown_model_suggests_close_names():
    with pytest.raises(refnets.UnknownModelError, match="Did you mean .*vgg16"):
        refnets.get_spec("vgg61")


def test_bad_options_are_named():
    with pytest.raises(refnets.BadOptionError, match="no option"):
        refnets.get_spec("lenet", num_clases=3)
    with pytest.raises(refnets.BadOptionError, match="num_classes"):
        refnets.get_spec("lenet", num_classes=0)
    with pytest.raises(refnets.BadOptionError, match="channels"):
        refnets.get_spec("lenet", input_shape=(3, 28, 28))


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        S.ModelSpec(name="x", root=S.Sequential(children=(S.Identity(name="a"), S.Identity(name="a"))),
                    input_shape=(1, 4, 4))


def test_walk_is_execution_order_with_containers_last():
    model = refnets.get_spec("nin")
    paths = [p for p, _ in model.walk()]
    assert paths[:3] == ["block1.conv", "block1.relu", "block1.mlp1"]
    assert paths.index("block1") > paths.index("block1.relu2")
    assert paths[-1] == ""


def test_ceil_mode_follows_pytorch_rule():
    # 6 -> ceil((6 - 3) / 2) + 1 = 3, and the last window starts inside the input
    assert shapes.pool_output_hw(maxpool("p", 3, 2, ceil_mode=True), (6, 6)) == (3, 3)
    # 5 with pad 1, k 2, s 2: ceil((5 + 2 - 2) / 2) + 1 = 4, but window 4 would start at 6 >= 5 + 1: dropped
    assert shapes.pool_output_hw(maxpool("p", 2, 2, padding=1, ceil_mode=True), (5, 5)) == (3, 3)
    assert shapes.pool_window_padding(maxpool("p", 3, 2, ceil_mode=True), (6, 6)) == (0, 1, 0, 1)


def test_avgpool_divisors_follow_pytorch_rule():
    node = avgpool("p", 3, 2, padding=1, ceil_mode=True, count_include_pad=True)
    # 4 input rows, pad 1: windows start at -1, 1, 3 -> sizes 3, 3, 2 (padding counted, overhang not);
    # values checked against torch.nn.functional.avg_pool2d on a ones input
    assert shapes.avgpool_divisors(node, (4, 4))[0].tolist() == [9.0, 9.0, 6.0]
    node = avgpool("p", 3, 2, padding=1, ceil_mode=True, count_include_pad=False)
    assert shapes.avgpool_divisors(node, (4, 4)).tolist() == [[4.0, 6.0, 2.0], [6.0, 9.0, 3.0], [2.0, 3.0, 1.0]]


def test_adaptive_windows():
    assert shapes.adaptive_windows(6, 6) == [(i, i + 1) for i in range(6)]
    assert shapes.adaptive_windows(1, 3) == [(0, 1)] * 3
    assert shapes.adaptive_windows(5, 3) == [(0, 2), (1, 4), (3, 5)]


def test_seeded_init_is_deterministic_and_complete():
    model = refnets.get_spec("resnet18", input_shape=(3, 32, 32))
    a, b = W.init(model, seed=1), W.init(model, seed=1)
    assert sorted(a) == sorted(refnets.param_shapes(model))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], W.init(model, seed=2)["conv1.weight"])
    assert a["bn1.running_var"].min() > 0 and np.std(a["bn1.running_mean"]) > 0


@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_weight_files_round_trip(tmp_path, ext):
    weights = W.init(refnets.get_spec("lenet"), seed=0, dtype="float64")
    path = str(tmp_path / f"w.{ext}")
    W.save(path, weights)
    back = W.load(path)
    assert sorted(back) == sorted(weights)
    assert all(back[k].dtype == np.float64 and np.array_equal(back[k], weights[k]) for k in weights)


def test_bad_weight_files_are_refused(tmp_path):
    with pytest.raises(W.WeightFileError, match="no such"):
        W.load(str(tmp_path / "missing.npz"))
    corrupt = tmp_path / "c.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(W.WeightFileError, match="not a readable"):
        W.load(str(corrupt))
    pickled = tmp_path / "p.npz"
    np.savez(pickled, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(W.WeightFileError):
        W.load(str(pickled))
    with pytest.raises(W.WeightFileError, match="end in"):
        W.save(str(tmp_path / "w.pt"), {})


def test_check_lists_every_problem():
    with pytest.raises(W.WeightMismatchError) as err:
        W.check({"a": (2,), "b": (3,)}, {"a": np.zeros(3), "c": np.zeros(1)})
    text = str(err.value)
    assert "missing (1): b" in text and "unexpected (1): c" in text and "a: expected (2,), got (3,)" in text


def _run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


def test_importing_refnets_imports_no_framework():
    code = ("import sys, refnets; refnets.get_spec('alexnet'); refnets.list_models(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'mxnet', 'keras', 'tensorflow')))")
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_summary_cli():
    result = _run("-m", "refnets", "summary", "lenet")
    assert result.returncode == 0
    assert "fc3" in result.stdout and "61,706" in result.stdout
    listing = _run("-m", "refnets", "list")
    assert "vgg19" in listing.stdout
    bad = _run("-m", "refnets", "summary", "alexnet", "--input-shape", "3,32,32")
    assert bad.returncode == 2 and "features.pool5" in bad.stderr and "Traceback" not in bad.stderr


def test_every_node_type_has_one_rule_and_kind():
    from refnets import rules

    leaves = {S.Conv2d, S.Dense, S.BatchNorm, S.Activation, S.MaxPool, S.AvgPool, S.GlobalAvgPool,
              S.AdaptiveAvgPool, S.ZeroPad, S.Flatten, S.Dropout, S.Identity, S.Shared}
    assert set(rules.NODE_TYPES) == leaves
    assert rules.kind(S.Conv2d(out_channels=2, kernel=(1, 1))) == "conv"
    assert rules.kind(S.Sequential()) == "sequential" and rules.kind(S.Parallel()) == "parallel"
    assert [t.__name__ for t in rules.NODE_TYPES if rules.RULES[t].kind in rules.PARAM_KINDS] == \
        ["Conv2d", "Dense", "BatchNorm"]


def test_a_node_type_without_a_rule_is_named():
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class Swish(S.Node):
        pass

    model = S.ModelSpec(name="m", root=S.Sequential(children=(Swish(name="act"),)), input_shape=(1, 4, 4))
    with pytest.raises(TypeError, match=r"node 'act': unknown node type Swish; the vocabulary has Conv2d"):
        refnets.infer(model)
