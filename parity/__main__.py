"""python -m parity MODEL [--backends torch,mxnet,keras] ... : do the frameworks agree?
python -m parity MODEL --against ZOO [--backends ...] ...     : does our model compute
what the framework's own zoo model computes? (ZOO: keras, gluon, torchvision;
MODEL: our name or the zoo's; `--list --against ZOO` lists what a zoo reproduces)
python -m parity MODEL --port MODULE:CALLABLE [--port-backend torch]: does your own
hand-written model (CALLABLE returns it; MODULE may be a .py file) compute what
MODEL computes? Our weights are mapped onto it by structure, not names.

Exit codes: 0 all backends agree within tolerance, 1 some disagree, 2 usage or
environment error."""

from __future__ import annotations

import argparse
import sys

from refnets import registry, zoo_import
from refnets.cliargs import parse_option, parse_shape

from . import port_report, report
from .conformance import run_against
from .port import run_port
from .runner import DTYPES, USAGE_ERRORS, ParityUsageError, run


def _backends(text: str):
    return [b.strip() for b in text.split(",") if b.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parity", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="model name (see --list)")
    p.add_argument("--list", action="store_true", help="list the models and exit")
    p.add_argument("--backends", type=_backends, help="comma-separated, default: every installed backend")
    p.add_argument("--reference", help="backend the others are compared with (default: the first)")
    p.add_argument("--against", metavar="ZOO", choices=("keras", "gluon", "torchvision"),
                   help="compare every backend with this zoo's own model (keras, gluon, torchvision): its own "
                        "initialisation, BatchNorm randomised, weights imported")
    p.add_argument("--port", metavar="MODULE:CALLABLE",
                   help="check your own native model (CALLABLE() returns it) against MODEL")
    p.add_argument("--port-backend", choices=("torch", "mxnet", "keras"), default="torch",
                   help="the framework of the --port model (default torch)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--input-shape", type=parse_shape, metavar="C,H,W", help="default: the model's")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rtol", type=float, help="default per dtype, see the README")
    p.add_argument("--atol", type=float)
    p.add_argument("--weights", metavar="FILE", help="canonical weights (.safetensors or .npz) instead of seeded ones")
    p.add_argument("--save-weights", metavar="FILE", help="save the canonical weights used")
    p.add_argument("--layers", action="store_true", help="print the per-node comparison even when all agree")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--option", type=parse_option, action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. num_classes=10 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _progress(message: str) -> None:
    print(f"[parity] {message} ...", file=sys.stderr, flush=True)


def _run_port(args, progress) -> int:
    for flag, value in (("--against", args.against), ("--backends", args.backends),
                        ("--save-weights", args.save_weights)):
        if value is not None:
            raise ParityUsageError(f"{flag} does not apply to a port check (the reference backend is --reference, "
                                   f"default the --port-backend)")
    result = run_port(args.model, args.port, port_backend=args.port_backend, reference=args.reference,
                      batch=args.batch, input_shape=args.input_shape, dtype=args.dtype, seed=args.seed,
                      rtol=args.rtol, atol=args.atol, weights=args.weights, layers=args.layers,
                      options=dict(args.option), progress=progress)
    print(port_report.text(result, all_layers=args.layers))
    if args.json:
        port_report.write_json(result, args.json)
    return result.exit_code


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        print("\n".join(zoo_import.supported(args.against) if args.against else registry.list_models()))
        return 0
    if not args.model:
        print("error: name a model (see python -m parity --list)", file=sys.stderr)
        return 2
    progress = None if args.quiet else _progress
    try:
        if args.port:
            return _run_port(args, progress)
        if args.against:
            for flag, value in (("--reference", args.reference), ("--weights", args.weights)):
                if value is not None:
                    raise ParityUsageError(f"{flag} does not apply to a zoo run: the zoo model is the reference "
                                           f"and its weights are the ones compared")
            result = run_against(args.model, args.against, backends=args.backends, batch=args.batch,
                                 input_shape=args.input_shape, dtype=args.dtype, seed=args.seed, rtol=args.rtol,
                                 atol=args.atol, save_weights=args.save_weights, layers=args.layers,
                                 options=dict(args.option), progress=progress)
        else:
            result = run(args.model, backends=args.backends, reference=args.reference, batch=args.batch,
                         input_shape=args.input_shape, dtype=args.dtype, seed=args.seed, rtol=args.rtol,
                         atol=args.atol, weights=args.weights, save_weights=args.save_weights, layers=args.layers,
                         options=dict(args.option), progress=progress)
    except USAGE_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.text(result, all_nodes=args.layers))
    if args.json:
        report.write_json(result, args.json)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
