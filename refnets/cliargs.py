"""Argument parsers shared by the `refnets` and `parity` command lines."""

import argparse


def parse_shape(text: str):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W integers, got {text!r}")
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers C,H,W, got {text!r}")
    return values


def parse_option(text: str):
    """key=value with value read as int, float, bool or string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"options are key=value, got {text!r}")
    key, raw = text.split("=", 1)
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    for kind in (int, float):
        try:
            return key, kind(raw)
        except ValueError:
            pass
    return key, raw


def parse_python_pair(text: str):
    """NAME=PATH of `--python`: the interpreter a backend's worker runs in."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=PATH, e.g. mxnet=/path/to/venv/bin/python")
    return name.strip(), path.strip()
