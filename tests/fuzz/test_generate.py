"""The fuzz generator: seeded and reproducible, always valid, and over the whole vocabulary."""

import collections

from refnets import rules, shapes, specfile
from refnets import spec as S

from parity.fuzz import generate as G


def test_case_i_of_seed_s_is_always_the_same():
    first = [G.case(7, i) for i in range(15)]
    again = [G.case(7, i) for i in reversed(range(15))][::-1]
    assert [specfile.dumps(c.model) for c in first] == [specfile.dumps(c.model) for c in again]
    assert [(c.batch, c.weight_seed, c.input_seed) for c in first] == [(c.batch, c.weight_seed, c.input_seed)
                                                                      for c in again]
    assert specfile.dumps(G.case(8, 3).model) != specfile.dumps(G.case(7, 3).model)


def test_every_case_is_a_valid_spec_within_budget_that_round_trips_as_a_spec_file():
    for i in range(25):
        model = G.case(1, i).model
        shapes.infer(model)  # raises for an invalid spec
        assert G.within_budget(model)
        assert specfile.loads(specfile.dumps(model)) == model


def test_the_cases_cover_the_vocabulary_and_the_settings_frameworks_differ_on():
    seen = collections.Counter()
    for i in range(150):
        for _, node in G.case(2, i).model.walk():
            seen[type(node).__name__] += 1
            seen.update(_settings(node))
    assert {t.__name__ for t in rules.NODE_TYPES} <= set(seen)
    for setting in ("same", "asymmetric", "ceil_mode", "exclude_pad", "include_pad", "groups", "dilation",
                    "stride", "affine_free", "add", "concat", "keepdims", "softmax", "bias_free"):
        assert seen[setting] > 0, setting


def _settings(node):
    padding = getattr(node, "padding", None)
    if padding == S.SAME:
        yield "same"
    elif padding is not None and (padding[0] != padding[1] or padding[2] != padding[3]):
        yield "asymmetric"
    if getattr(node, "ceil_mode", False):
        yield "ceil_mode"
    if isinstance(node, S.AvgPool):
        yield "include_pad" if node.count_include_pad else "exclude_pad"
    if getattr(node, "groups", 1) > 1:
        yield "groups"
    if getattr(node, "dilation", (1, 1)) != (1, 1):
        yield "dilation"
    if getattr(node, "stride", (1, 1)) != (1, 1):
        yield "stride"
    if isinstance(node, S.BatchNorm) and not node.affine:
        yield "affine_free"
    if isinstance(node, S.Parallel):
        yield node.merge
    if getattr(node, "keepdims", False):
        yield "keepdims"
    if isinstance(node, S.Activation):
        yield node.kind
    if getattr(node, "bias", True) is False:
        yield "bias_free"


def test_an_invalid_spec_is_told_apart_without_a_framework():
    tiny = S.ModelSpec(name="t", root=S.Sequential(children=(S.Conv2d(name="c", out_channels=2, kernel=(5, 5)),)),
                       input_shape=(1, 3, 3))
    assert not G.is_valid(tiny)
    assert G.is_valid(tiny.with_input_shape((1, 5, 5)))
