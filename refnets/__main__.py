"""`python -m refnets list` and `python -m refnets summary MODEL [--input-shape C,H,W]`."""

from __future__ import annotations

import argparse
import sys

from . import registry, shapes
from .cliargs import parse_option, parse_shape
from .describe import summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refnets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the models")
    p = sub.add_parser("summary", help="per-node table of a model")
    p.add_argument("model")
    p.add_argument("--input-shape", type=parse_shape)
    p.add_argument("--option", type=parse_option, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--containers", action="store_true", help="also list Sequential/Parallel nodes")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in registry.list_models():
            counts = shapes.counts(registry.get_spec(name))
            print(f"{name:16s} {counts.trainable:>13,} trainable params")
        return 0
    try:
        model = registry.get_spec(args.model, input_shape=args.input_shape, **dict(args.option))
        print(summary(model, containers=args.containers))
    except (registry.UnknownModelError, registry.BadOptionError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
