"""The structural diff of two specs names each planted difference in one summarised line."""

import dataclasses

from parity.port.diff import structural_diff
from refnets import registry
from refnets import spec as S


def planted(model, predicate, change):
    root = model.root
    for path, node in list(model.walk()):
        if predicate(path, node):
            root = S.replace(root, path, change)
    return dataclasses.replace(model, root=root)


def test_identical_specs_have_no_difference():
    model = registry.get_spec("resnet18")
    assert structural_diff(model, model).identical


def test_repeated_differences_are_one_line_each_with_a_count():
    ref = registry.get_spec("resnet18")
    port = planted(ref, lambda p, n: isinstance(n, S.Conv2d), lambda n: dataclasses.replace(n, bias=True))
    port = planted(port, lambda p, n: isinstance(n, S.BatchNorm), lambda n: dataclasses.replace(n, eps=1e-3))
    diff = structural_diff(ref, port)
    assert diff.summary() == ["all 20 convs: the port has a bias the reference lacks",
                              "all 20 BatchNorms: eps 1e-05 vs 0.001"]
    assert diff.copyable


def test_a_kernel_size_in_one_inception_branch_is_named_and_not_copyable():
    ref = registry.get_spec("googlenet")
    port = planted(ref, lambda p, n: p == "inception3a.branch2.1.conv",
                   lambda n: dataclasses.replace(n, kernel=(1, 1), padding=(0, 0, 0, 0)))
    diff = structural_diff(ref, port)
    assert "inception3a.branch2.1.conv: kernel 3x3 vs 1x1" in diff.summary()
    assert not diff.copyable


def test_a_missing_relu_is_named_after_the_node_before_it():
    ref = registry.get_spec("lenet")
    relu = next(p for p, n in ref.walk() if isinstance(n, S.Activation))
    port = dataclasses.replace(ref, root=S.replace(ref.root, relu, lambda n: S.Identity(name=n.name)))
    diff = structural_diff(ref, port)
    (line,) = diff.summary()
    before = [p for p, n in ref.walk()][[p for p, n in ref.walk()].index(relu) - 1]
    kind = S.find(ref.root, relu).kind
    assert line == f"no {'ReLU' if kind == 'relu' else kind} after {before} in the port"
    assert diff.copyable


def test_a_concat_in_another_order_is_found_and_aligned_by_the_permutation():
    ref = registry.get_spec("googlenet")
    port = planted(ref, lambda p, n: p == "inception4a",
                   lambda n: dataclasses.replace(n, branches=(n.branches[1], n.branches[0]) + n.branches[2:]))
    diff = structural_diff(ref, port)
    assert diff.summary() == ["inception4a: concat order of the branches differs (the port's order is 1, 0, 2, 3)"]
    pairs = {a.path: b.path for a, b in diff.alignment.pairs}
    assert pairs["inception4a.branch1.0.conv"] == "inception4a.branch1.0.conv"  # same names, swapped positions
    assert diff.copyable


def test_an_adaptive_pool_against_a_fixed_pool_says_at_which_size_they_agree():
    ref = registry.get_spec("resnet18")
    port = planted(ref, lambda p, n: isinstance(n, S.GlobalAvgPool),
                   lambda n: S.Sequential(name=n.name, children=(S.AvgPool(name="pool", kernel=(7, 7), stride=(7, 7)),
                                                                 S.Flatten(name="flat"))))
    lines = structural_diff(ref, port).summary()
    assert any("adaptive pool" in line and "agree only at input 224x224" in line for line in lines), lines


def test_a_max_pool_that_zero_pads_instead_of_padding_with_minus_infinity():
    ref = registry.get_spec("resnet18")
    port = planted(ref, lambda p, n: p == "maxpool",
                   lambda n: S.Sequential(name="maxpool", children=(
                       S.ZeroPad(name="pad", padding=(1, 1, 1, 1)),
                       dataclasses.replace(n, name="pool", padding=(0, 0, 0, 0)))))
    assert structural_diff(ref, port).summary() == [
        "maxpool: the reference's max pool pads with -inf where the port zero-pads before it"]
