"""python -m refnets list
python -m refnets summary MODEL [--input-shape C,H,W] [--option KEY=VALUE ...]
python -m refnets export MODEL [--option KEY=VALUE ...] --out model.json

MODEL is a zoo model's name (see `list`) or a spec file (a path ending in .json,
as `export` writes it)."""

from __future__ import annotations

import argparse
import os
import sys

from . import models, registry, shapes, specfile
from .cliargs import parse_option, parse_shape
from .describe import summary

MODEL_HELP = "a zoo model's name (see list) or a spec file (.json, as export writes it)"
OPTION_HELP = "zoo model option, e.g. num_classes=10 (repeatable; a spec file takes none)"

SUMMARY_HELP = """A per-node table: output shape, parameters, multiply-accumulates.

The counts at the end: "trainable params" are the learned parameters; "total
params" adds the BatchNorm running statistics (as Keras's model.summary() counts).
Below them, the same model counted as torchsummary's summary(model, input_size)
prints it, to hold against a tutorial's printout: torchsummary adds up each layer's
own weight and bias every time the layer is called, so it leaves out BatchNorm
running statistics (buffers, not parameters) and counts a layer applied twice (a
Shared node) twice; every parameter of a freshly built model is trainable, so its
"Non-trainable params" is 0."""

EXPORT_HELP = """Write MODEL's spec as a versioned JSON file (format "refnets-spec"):
every node with all of its fields, defaults included. The file is a MODEL argument
of `python -m refnets summary` and `python -m parity`, and can be edited by hand:
reading it checks it and names the JSON path of any problem."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m refnets", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the models")
    s = sub.add_parser("summary", help="per-node table of a model", description=SUMMARY_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", help=MODEL_HELP)
    s.add_argument("--input-shape", type=parse_shape, metavar="C,H,W", help="default: the model's")
    s.add_argument("--option", type=parse_option, action="append", default=[], metavar="KEY=VALUE", help=OPTION_HELP)
    s.add_argument("--containers", action="store_true", help="also list Sequential/Parallel nodes")
    e = sub.add_parser("export", help="write a model's spec as a JSON file", description=EXPORT_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("model", help=MODEL_HELP)
    e.add_argument("--input-shape", type=parse_shape, metavar="C,H,W", help="the input shape the file records")
    e.add_argument("--option", type=parse_option, action="append", default=[], metavar="KEY=VALUE", help=OPTION_HELP)
    e.add_argument("--out", required=True, metavar="FILE.json", help="where to write the spec file")
    return p


def _export(args) -> None:
    if not specfile.looks_like_spec_file(args.out):
        raise ValueError(f"--out {args.out}: a spec file's name ends in .json (so MODEL arguments recognise it)")
    model = models.resolve(args.model, input_shape=args.input_shape, options=dict(args.option))
    shapes.infer(model)  # a too small --input-shape fails here, naming the node
    specfile.save(model, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out):,} bytes): {model.name}, input "
          f"{'x'.join(map(str, model.input_shape))}")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.command == "list":
        for name in registry.list_models():
            counts = shapes.counts(registry.get_spec(name))
            print(f"{name:16s} {counts.trainable:>13,} trainable params")
        return 0
    try:
        if args.command == "export":
            _export(args)
        else:
            model = models.resolve(args.model, input_shape=args.input_shape, options=dict(args.option))
            print(summary(model, containers=args.containers))
    except (registry.UnknownModelError, registry.BadOptionError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
