"""Spec files: every zoo model survives JSON, every error names its JSON path, the
format is derived from the dataclasses (a new node type needs no code there)."""

import copy
import dataclasses
import json
import re
from typing import Literal

import pytest
import refnets
from refnets import registry, rules, shapes, specfile
from refnets import spec as S

LAYOUT_NAMES = ("torchvision", "keras", "gluon", "he", "paper")


def _variants(name):
    """The model's default options, each bool flipped, another class count and every layout it takes."""
    defaults = registry.options_of(name)
    variants = [{}]
    variants += [{k: not v} for k, v in defaults.items() if isinstance(v, bool)]
    if "num_classes" in defaults:
        variants.append({"num_classes": 7})
    if "layout" in defaults:
        variants += [{"layout": layout} for layout in LAYOUT_NAMES if layout != defaults["layout"]]
    return variants


def _specs(name):
    for options in _variants(name):
        try:
            yield options, registry.get_spec(name, **options)
        except registry.BadOptionError:
            assert "layout" in options, options  # only guessed layout names may be refused


@pytest.mark.parametrize("name", registry.list_models())
def test_every_zoo_model_and_variant_survives_the_file(name):
    for options, model in _specs(name):
        text = specfile.dumps(model)
        back = specfile.loads(text)
        assert back == model, options
        assert dict(back.options) == dict(model.options)
        assert specfile.dumps(back) == text  # writing is deterministic


def test_the_file_lists_every_field_in_dataclass_order(tmp_path):
    model = registry.get_spec("lenet")
    path = tmp_path / "lenet.json"
    specfile.save(model, path)
    obj = json.loads(path.read_text())
    assert (obj["format"], obj["version"], obj["input_shape"]) == ("refnets-spec", 1, [1, 28, 28])
    conv = obj["root"]["children"][0]
    assert list(conv) == ["type"] + [f.name for f in dataclasses.fields(S.Conv2d)]
    assert conv["padding"] == [2, 2, 2, 2] and conv["bias"] is True
    assert '"kernel": [5, 5],' in path.read_text()  # short lists on one line
    assert specfile.load(path) == model
    assert specfile.is_spec_file(str(path)) and not specfile.is_spec_file("lenet")
    assert not specfile.is_spec_file(str(tmp_path / "missing.json"))


MINIMAL = """{"format": "refnets-spec", "version": 1, "name": "tiny", "input_shape": [1, 8, 8],
 "root": {"type": "Sequential", "children": [
   {"type": "Conv2d", "name": "conv", "out_channels": 4, "kernel": [3, 3], "padding": "same"},
   {"type": "BatchNorm", "eps": 1},
   {"type": "Activation"}, {"type": "Flatten"},
   {"type": "Dense", "name": "fc", "out_features": 2}]}}"""


def test_a_hand_written_minimal_file_loads_with_defaults():
    expected = S.ModelSpec(name="tiny", input_shape=(1, 8, 8), root=S.Sequential(children=(
        S.Conv2d(name="conv", out_channels=4, kernel=(3, 3), padding=S.SAME), S.BatchNorm(eps=1.0),
        S.Activation(), S.Flatten(), S.Dense(name="fc", out_features=2))))
    obj = json.loads(MINIMAL)
    specfile.check_schema(obj)
    root = specfile.node_from_json(obj["root"], "$.root", "", {})
    assert root == expected.root
    assert isinstance(root.children[1].eps, float)
    written = specfile.node_to_json(expected.root)
    assert written["children"][0]["padding"] == "same"
    assert specfile.node_from_json(json.loads(json.dumps(written)), "$.root", "", {}) == expected.root
    if S.SAME in _same_padding_support():
        assert specfile.loads(MINIMAL) == expected
        assert shapes.output_shape(expected) == (2,)


def _same_padding_support():
    try:
        shapes.infer(S.ModelSpec(name="t", input_shape=(1, 5, 5),
                                 root=S.Conv2d(out_channels=1, kernel=(3, 3), padding=S.SAME)))
    except (ValueError, TypeError):
        return ()
    return (S.SAME,)


def _lenet_json():
    return specfile.to_json(registry.get_spec("lenet"))


def _set(path, value):
    def mutate(obj):
        *head, last = path
        for key in head:
            obj = obj[key]
        if value is _DELETE:
            del obj[last]
        else:
            obj[last] = value
    return mutate


_DELETE = object()
CHILD = ("root", "children")
ERRORS = [
    (_set(CHILD + (3, "kernel"), "x"), r"^\$\.root\.children\[3\]\.kernel: 'x' is not of type 'array'$"),
    (_set(CHILD + (3, "kernel"), [5, "x"]), r"^\$\.root\.children\[3\]\.kernel\[1\]: 'x' is not of type 'integer'$"),
    (_set(CHILD + (3, "groups"), 1.5), r"^\$\.root\.children\[3\]\.groups: 1\.5 is not of type 'integer'$"),
    (_set(CHILD + (0, "bias"), 1), r"^\$\.root\.children\[0\]\.bias: 1 is not of type 'boolean'$"),
    (_set(CHILD + (0, "type"), "Conv3d"),
     r"^\$\.root\.children\[0\]\.type: 'Conv3d' is not a node type \(the vocabulary has Conv2d, .*Sequential, "
     r"Parallel\); did you mean Conv2d\?$"),
    (_set(CHILD + (0, "kernal"), [3, 3]),
     r"^\$\.root\.children\[0\]: unknown field\(s\) 'kernal' for a Conv2d node \(its fields: type, name, "
     r"out_channels, kernel, .*\); did you mean 'kernel'\?$"),
    (_set(CHILD + (0, "out_channels"), _DELETE),
     r"^\$\.root\.children\[0\]: missing required field\(s\) 'out_channels' of a Conv2d node$"),
    (_set(CHILD + (0, "padding"), "valid"),
     r"^\$\.root\.children\[0\]\.padding: 'valid' is not a list of 4 integers or \"same\"$"),
    (_set(CHILD + (0, "padding"), [1, 1, 1]), r"^\$\.root\.children\[0\]\.padding: \[1, 1, 1\] is too short$"),
    (_set(CHILD + (1, "kind"), "gelu"), r"^\$\.root\.children\[1\]\.kind: 'gelu' is not one of"),
    (_set(("extra",), 1), r"^\$: unknown field\(s\) 'extra' for a spec file"),
    (_set(("root",), _DELETE), r"^\$: missing required field\(s\) 'root' of a spec file$"),
    (_set(("input_shape",), [1, 28]), r"^\$\.input_shape: \[1, 28\] is too short$"),
    (_set(("format",), "onnx"), r"^\$\.format: not a refnets spec file"),
    # semantic: spec.validate, then shape inference at the file's input shape
    (_set(CHILD + (1, "name"), "conv1"), r"^\$\.root\.children\[0\]: duplicate child names \['conv1'\] under"),
    (_set(CHILD + (6, "type"), "Identity"),
     r"^\$\.root\.children\[7\]: the spec does not hold together at its input shape 1x28x28: node 'fc1' \(Dense\) "
     r"needs a vector input"),
    (_set(("input_shape",), [1, 8, 8]),
     r"^\$\.root\.children\[3\]: the spec does not hold together at its input shape 1x8x8: input too small: "
     r"node 'conv2'"),
]


@pytest.mark.parametrize("mutate,message", ERRORS, ids=[m for _, m in ERRORS])
def test_every_error_names_its_json_path(mutate, message):
    obj = _lenet_json()
    mutate(obj)
    with pytest.raises(specfile.SpecFileError) as caught:
        specfile.from_json(obj)
    assert re.search(message, str(caught.value)), str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_file_from_a_newer_version_says_so(tmp_path):
    obj = _lenet_json()
    obj["version"] = 2
    obj["root"]["children"][0]["type"] = "Conv2dFromTheFuture"  # the version is told before the schema
    path = tmp_path / "new.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(specfile.SpecFileError) as caught:
        specfile.load(path)
    assert str(caught.value) == (f"{path}: $.version: written by a newer refnets: format version 2, this one reads "
                                 f"up to 1 (upgrade refnets)")


def test_not_json_and_unreadable_files(tmp_path):
    with pytest.raises(specfile.SpecFileError, match=r"not JSON: .*line 1 column"):
        specfile.loads('{"format": ')
    with pytest.raises(specfile.SpecFileError, match=r"missing\.json: cannot read the spec file"):
        specfile.load(tmp_path / "missing.json")
    with pytest.raises(specfile.SpecFileError, match=r"^\$: a spec file is a JSON object, got list$"):
        specfile.loads("[]")


def test_the_schema_follows_the_dataclasses():
    schema = specfile.schema()
    conv = schema["$defs"]["Conv2d"]
    assert list(conv["properties"]) == ["type"] + [f.name for f in dataclasses.fields(S.Conv2d)]
    assert conv["required"] == ["type", "out_channels", "kernel"]
    assert conv["properties"]["padding"]["anyOf"][1] == {"enum": ["same"]}
    assert schema["$defs"]["Activation"]["properties"]["kind"] == {"enum": list(S.ACTIVATION_KINDS)}
    assert set(schema["$defs"]) == {"node"} | {t.__name__ for t in rules.NODE_TYPES + S.CONTAINERS}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scale(S.Node):
    """A node type that exists only in this test."""

    factor: float
    mode: Literal["mul", "div"] = "mul"
    window: S.Pair = (1, 1)


def test_a_node_type_added_later_needs_no_code_in_specfile(monkeypatch):
    rule = rules.Rule(Scale, "activation", lambda path, node, shape: shape, lambda node, shape: {},
                      lambda node, i, o: 0)
    monkeypatch.setattr(rules, "NODE_TYPES", rules.NODE_TYPES + (Scale,))
    monkeypatch.setitem(rules.RULES, Scale, rule)
    model = S.ModelSpec(name="scaled", input_shape=(3, 4, 4), root=S.Sequential(children=(
        S.Conv2d(name="conv", out_channels=2, kernel=(1, 1)), Scale(name="half", factor=0.5, window=(2, 3)))))
    text = specfile.dumps(model)
    assert '"type": "Scale"' in text and '"window": [2, 3]' in text
    assert specfile.loads(text) == model
    bad = json.loads(text)
    bad["root"]["children"][1]["mode"] = "pow"
    with pytest.raises(specfile.SpecFileError, match=r"^\$\.root\.children\[1\]\.mode: 'pow' is not one of"):
        specfile.from_json(bad)


def _shared_model():
    conv = S.Conv2d(name="conv", out_channels=3, kernel=(3, 3), padding=(1, 1, 1, 1))
    return S.ModelSpec(name="siamese", input_shape=(3, 8, 8), root=S.Sequential(children=(
        conv, S.BatchNorm(name="bn"), S.Shared(name="again", target="conv"), S.GlobalAvgPool(name="gap"))))


@pytest.fixture
def shared_rule(monkeypatch):
    """Shared in the vocabulary: its own rule where rules.py has one, else a stand-in
    that keeps the shape (true of the shape-preserving conv `_shared_model` reuses)."""
    if S.Shared not in rules.NODE_TYPES:
        stand_in = rules.Rule(S.Shared, "shared", lambda path, node, shape: shape, lambda node, shape: {},
                              lambda node, i, o: 0)
        monkeypatch.setattr(rules, "NODE_TYPES", rules.NODE_TYPES + (S.Shared,))
        monkeypatch.setitem(rules.RULES, S.Shared, stand_in)


def test_a_shared_layer_survives_the_file_and_a_bad_target_names_its_path(shared_rule):
    model = _shared_model()
    assert specfile.loads(specfile.dumps(model)) == model
    obj = specfile.to_json(model)
    obj["root"]["children"][2]["target"] = "gap"
    with pytest.raises(specfile.SpecFileError, match=r"^\$\.root\.children\[2\]: shared node 'again': its target "
                                                     r"'gap' is not a parameterised layer"):
        specfile.from_json(obj)


def test_torchsummary_counts_parameters_only():
    assert shapes.torchsummary_counts(registry.get_spec("lenet")) == shapes.TorchsummaryCounts(61_706, 61_706, 0)
    # torchsummary's printout for torchvision's resnet18: "Total params: 11,689,512"
    resnet = registry.get_spec("resnet18")
    assert shapes.torchsummary_counts(resnet).total == 11_689_512
    assert refnets.counts(resnet).total > 11_689_512  # ours adds the BatchNorm running statistics
    vgg_bn = registry.get_spec("vgg11", batch_norm=True)
    assert shapes.torchsummary_counts(vgg_bn).total == refnets.counts(vgg_bn).trainable


def test_torchsummary_counts_a_shared_layer_each_time_it_is_called(shared_rule):
    model = _shared_model()
    conv_params = 3 * 3 * 3 * 3 + 3
    assert shapes.torchsummary_counts(model).total == 2 * conv_params + 2 * 3


def test_dumps_refuses_a_node_type_outside_the_vocabulary():
    model = S.ModelSpec(name="odd", input_shape=(3, 4, 4), root=S.Sequential(children=(Scale(name="s", factor=2.0),)))
    with pytest.raises(TypeError, match=r"node 's': type Scale is not in the vocabulary"):
        specfile.dumps(model)


def test_options_must_be_json_scalars():
    obj = copy.deepcopy(_lenet_json())
    obj["options"]["num_classes"] = [10]
    with pytest.raises(specfile.SpecFileError, match=r"^\$\.options\.num_classes: \[10\] is not of type"):
        specfile.from_json(obj)
