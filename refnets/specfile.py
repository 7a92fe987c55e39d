"""Specs as files: a versioned JSON format for a `ModelSpec`.

    {"format": "refnets-spec", "version": 1, "name": "lenet", "input_shape": [1, 28, 28],
     "options": {"num_classes": 10},
     "root": {"type": "Sequential", "name": "", "children": [
        {"type": "Conv2d", "name": "conv1", "out_channels": 6, "kernel": [5, 5], ...}, ...]}}

A node is its type's name and every one of its dataclass fields, in field order,
defaults included (every value on which frameworks differ is written out). Tuples
are lists; padding is four ints (top, bottom, left, right) or the string "same";
`Sequential.children` and `Parallel.branches` are lists of nodes.

Nothing here names a node type: the JSON schema and the reader are derived from the
dataclasses of the vocabulary (`rules.NODE_TYPES` and `spec.CONTAINERS`), so a node
type added there needs no code here. A file is checked in three steps, each error a
`SpecFileError` naming the JSON path of the problem: the schema (types, required and
unknown fields, node types), the spec's own rules (`spec.validate`: duplicate names,
`Shared` targets), and shape inference at the file's input shape.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import typing
from typing import Dict, List, Tuple

from . import rules
from .fileio import write_atomic
from . import spec as S

FORMAT = "refnets-spec"
VERSION = 1

_JSON_SCALARS = (bool, int, float, str)


class SpecFileError(ValueError):
    """A spec file that cannot be read: the message names the JSON path."""


# ------------------------------------------------------------------ the vocabulary


def node_types() -> Dict[str, type]:
    """Node type name -> dataclass, for every type a file may hold."""
    return {t.__name__: t for t in tuple(rules.NODE_TYPES) + tuple(S.CONTAINERS)}


def node_fields(node_type: type) -> List[Tuple[str, object, bool]]:
    """(field name, resolved annotation, required) in dataclass field order."""
    hints = typing.get_type_hints(node_type)
    return [(f.name, hints[f.name],
             f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(node_type)]


def _is_node_tuple(annotation) -> bool:
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis \
        and isinstance(args[0], type) and issubclass(args[0], S.Node)


def type_schema(annotation) -> dict:
    """The JSON schema of one field's annotation."""
    if _is_node_tuple(annotation):
        return {"type": "array", "items": {"$ref": "#/$defs/node"}}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is typing.Union:
        return {"anyOf": [type_schema(a) for a in args]}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0])}
        return {"type": "array", "prefixItems": [type_schema(a) for a in args], "minItems": len(args),
                "maxItems": len(args)}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    if annotation in simple:
        return {"type": simple[annotation]}
    raise TypeError(f"no JSON form for the annotation {annotation!r}")


def node_schema(node_type: type) -> dict:
    fields = node_fields(node_type)
    properties = {"type": {"const": node_type.__name__}}
    properties.update({name: type_schema(annotation) for name, annotation, _ in fields})
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": ["type"] + [name for name, _, required in fields if required]}


def schema() -> dict:
    """The JSON schema (draft 2020-12) of a spec file of this version."""
    types = node_types()
    node = {"type": "object", "required": ["type"],
            "properties": {"type": {"type": "string", "enum": sorted(types)}},
            "allOf": [{"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                       "then": {"$ref": f"#/$defs/{name}"}} for name in types]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["format", "version", "name", "input_shape", "root"],
        "additionalProperties": False,
        "properties": {
            "format": {"const": FORMAT},
            "version": {"type": "integer", "minimum": 1},
            "name": {"type": "string"},
            "input_shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 3,
                            "maxItems": 3},
            "options": {"type": "object", "additionalProperties": {"type": ["boolean", "integer", "number",
                                                                             "string"]}},
            "root": {"$ref": "#/$defs/node"},
        },
        "$defs": {"node": node, **{name: node_schema(t) for name, t in types.items()}},
    }


# ------------------------------------------------------------------------ writing


def node_to_json(node: S.Node, path: str = "") -> dict:
    """One node as a JSON object: its type, then every field in dataclass order."""
    if node_types().get(type(node).__name__) is not type(node):
        raise TypeError(f"node {path or '<root>'!r}: type {type(node).__name__} is not in the vocabulary "
                        f"({', '.join(node_types())})")
    out = {"type": type(node).__name__}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, tuple) and value and all(isinstance(v, S.Node) for v in value):
            out[f.name] = [node_to_json(c, S.join(path, S.child_segment(c, i))) for i, c in enumerate(value)]
        else:
            out[f.name] = _plain(value)
    return out


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, S.Node):
        return node_to_json(value)
    return value


def to_json(model: S.ModelSpec) -> dict:
    return {"format": FORMAT, "version": VERSION, "name": model.name, "input_shape": list(model.input_shape),
            "options": {k: v for k, v in model.options}, "root": node_to_json(model.root)}


def format_json(value, indent: int = 0) -> str:
    """JSON with two-space indent, one key per line, and a list of scalars (a
    kernel, a padding) on one line: short and diff-friendly."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {format_json(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if all(isinstance(v, _JSON_SCALARS) or v is None for v in value):
            return "[" + ", ".join(format_json(v) for v in value) + "]"
        return "[\n" + ",\n".join(inner + format_json(v, indent + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def dumps(model: S.ModelSpec) -> str:
    """The spec file's text (ends with a newline)."""
    return format_json(to_json(model)) + "\n"


def save(model: S.ModelSpec, path) -> None:
    write_atomic(path, dumps(model))  # never a half-written file


# ------------------------------------------------------------------------ reading


def _schema_message(error, types: Dict[str, type]) -> str:
    """One jsonschema error as 'JSON path: what is wrong', in the words of this format."""
    where, instance = error.json_path, error.instance
    if error.validator == "enum" and list(error.path)[-1:] == ["type"]:
        close = difflib.get_close_matches(str(instance), types, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"{where}: {instance!r} is not a node type (the vocabulary has {', '.join(types)}){hint}"
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = list(error.schema.get("properties", {}))
        unknown = [k for k in instance if k not in known]
        close = [m for k in unknown for m in difflib.get_close_matches(k, known, n=1)]
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        return (f"{where}: unknown field(s) {', '.join(map(repr, unknown))} for {_owner(where, instance)} "
                f"(its fields: {', '.join(known)}){hint}")
    if error.validator == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        return f"{where}: missing required field(s) {', '.join(map(repr, missing))} of {_owner(where, instance)}"
    if error.validator == "anyOf":
        choices = " or ".join(describe(choice) for choice in error.validator_value)
        return f"{where}: {instance!r} is not {choices}"
    return f"{where}: {error.message}"


def _owner(where: str, instance: dict) -> str:
    if where == "$":
        return "a spec file"
    return f"a {instance['type']} node" if isinstance(instance.get("type"), str) else "a node"


def describe(choice: dict) -> str:
    """A schema of `type_schema` in words: 'a list of 4 integers', '"same"'."""
    if "enum" in choice:
        return " or ".join(json.dumps(v) for v in choice["enum"])
    if choice.get("type") == "array" and "prefixItems" in choice:
        kinds = {item.get("type", "value") for item in choice["prefixItems"]}
        kind = kinds.pop() if len(kinds) == 1 else "value"
        return f"a list of {len(choice['prefixItems'])} {kind}s"
    return f"of type {choice.get('type', 'any')!r}"


def check_schema(obj) -> None:
    """SpecFileError naming the JSON path of the most relevant schema violation."""
    import jsonschema
    from jsonschema.exceptions import best_match

    validator = jsonschema.Draft202012Validator(schema())
    errors = list(validator.iter_errors(obj))
    if not errors:
        return
    best = best_match(errors)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    raise SpecFileError(_schema_message(best, node_types()) + more)


def check_header(obj) -> None:
    """Format and version first: a newer version may hold what this schema refuses."""
    if not isinstance(obj, dict):
        raise SpecFileError(f"$: a spec file is a JSON object, got {type(obj).__name__}")
    if obj.get("format") != FORMAT:
        raise SpecFileError(f"$.format: not a refnets spec file (expected \"format\": \"{FORMAT}\", "
                            f"got {obj.get('format')!r})")
    version = obj.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise SpecFileError(f"$.version: written by a newer refnets: format version {version}, this one reads up "
                            f"to {VERSION} (upgrade refnets)")


def node_from_json(obj: dict, where: str, path: str, located: Dict[str, str]) -> S.Node:
    """The node of a schema-valid JSON object; `located` collects spec path -> JSON path."""
    located.setdefault(path, where)
    node_type = node_types()[obj["type"]]
    kwargs = {}
    for name, annotation, _ in node_fields(node_type):
        if name not in obj:
            continue
        value = obj[name]
        if _is_node_tuple(annotation):
            value = tuple(node_from_json(child, f"{where}.{name}[{i}]",
                                         S.join(path, child.get("name") or str(i)), located)
                          for i, child in enumerate(value))
        elif annotation is float:
            value = float(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return node_type(**kwargs)


def locate(message: str, located: Dict[str, str]) -> str:
    """The JSON path of the first spec path quoted in `message` ('$.root' if none)."""
    for quoted in re.findall(r"'([^']*)'", message):
        key = "" if quoted == "<root>" else quoted
        if key in located:
            return located[key]
    return "$.root"


def from_json(obj, validate: bool = True) -> S.ModelSpec:
    """The ModelSpec of a parsed spec file, checked (see the module docstring).
    `validate=False` is for JSON that `to_json` wrote, e.g. a spec sent to a worker
    process: no schema step (it needs jsonschema) and no shape inference here (the
    backend's build infers, raising what it raises in the parent, such as
    InputTooSmallError); the spec's own rules still run."""
    check_header(obj)
    if validate:
        check_schema(obj)
    located: Dict[str, str] = {}
    root = node_from_json(obj["root"], "$.root", "", located)
    try:
        model = S.ModelSpec(name=obj["name"], root=root, input_shape=tuple(obj["input_shape"]),
                            options=tuple(obj.get("options", {}).items()))
    except ValueError as err:
        raise SpecFileError(f"{locate(str(err), located)}: {err}") from None
    if not validate:
        return model
    from . import shapes

    try:
        shapes.infer(model)
    except (ValueError, TypeError) as err:
        shape = "x".join(map(str, model.input_shape))
        raise SpecFileError(f"{locate(str(err), located)}: the spec does not hold together at its input shape "
                            f"{shape}: {err}") from None
    return model


def loads(text: str, validate: bool = True) -> S.ModelSpec:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecFileError(f"not JSON: {err}") from None
    return from_json(obj, validate=validate)


def load(path) -> S.ModelSpec:
    """The spec in file `path`; SpecFileError (prefixed with the path) if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise SpecFileError(f"{path}: cannot read the spec file: {getattr(err, 'strerror', None) or err}") from None
    try:
        return loads(text)
    except SpecFileError as err:
        raise SpecFileError(f"{path}: {err}") from None


def looks_like_spec_file(arg) -> bool:
    """A MODEL argument meant as a file (ends in .json), whether or not it exists."""
    return isinstance(arg, (str, os.PathLike)) and os.fspath(arg).lower().endswith(".json")


def is_spec_file(arg) -> bool:
    """An existing file whose name ends in .json."""
    return looks_like_spec_file(arg) and os.path.isfile(arg)
