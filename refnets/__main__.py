"""python -m refnets list
python -m refnets summary MODEL [--input-shape C,H,W] [--option KEY=VALUE ...]
python -m refnets export MODEL [--option KEY=VALUE ...] --out model.json
python -m refnets code MODEL [--from FRAMEWORK] --framework torch|mxnet|keras [--out FILE.py]
                       [--option KEY=VALUE ...]
python -m refnets trace MODULE:CALLABLE --from torch|mxnet|keras [--input-shape C,H,W]
                        --out model.json [--weights weights.safetensors]

MODEL is a zoo model's name (see `list`), a spec file (a path ending in .json,
as `export` writes it), or MODULE:CALLABLE with --from FRAMEWORK: your own model
(CALLABLE() returns it; MODULE is a dotted module or a .py file), traced."""

from __future__ import annotations

import argparse
import os
import sys

from . import exits, fileio, models, registry, shapes, specfile
from . import spec as S
from .backends import BackendUnavailableError, CapabilityError, UnknownBackendError
from .trace import FRAMEWORKS
from .cliargs import parse_option, parse_shape
from .describe import summary

MODEL_HELP = ("a zoo model's name (see list), a spec file (.json, as export writes it), or MODULE:CALLABLE with "
              "--from")
FROM_HELP = "MODEL is MODULE:CALLABLE returning your own model in this framework: trace it"

TRACE_HELP = """Trace your own model into the spec: its real graph is read (torch.export, the
Keras layer graph, the MXNet symbol or recorded autograd graph), every op mapped to
the vocabulary (or one message naming the op, its layer and what the vocabulary
offers), and the graph written as Sequential / Parallel nodes. --out writes the
spec file; --weights the model's own weights in the canonical layout."""
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


CODE_HELP = """Write MODEL as readable, self-contained source in one framework, importing only
that framework (with numpy for Keras and Gluon) and the standard library:

  torch   an nn.Module class per kind of block, its numbers as constructor arguments
  mxnet   the same as Gluon HybridBlock classes with hybrid_forward
  keras   keras.applications-style builder functions (one per kind of block) building
          a channels-last keras.Model, with a free input height and width where the
          architecture allows (no Flatten before a Dense)

Stages are loops over a small table; build(**options) returns the model, and
load_canonical(model, path) loads canonical weights (safetensors) whose names are
the spec's paths, converting the layouts where the framework's differ (Keras).
The module's docstring lists every framework-sensitive choice. Without --out the
source goes to standard output."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m refnets", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(exits.DEBUG_FLAG, action="store_true", help=exits.DEBUG_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the models")
    s = sub.add_parser("summary", help="per-node table of a model", description=SUMMARY_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", help=MODEL_HELP)
    s.add_argument("--input-shape", type=parse_shape, metavar="C,H,W", help="default: the model's")
    s.add_argument("--option", type=parse_option, action="append", default=[], metavar="KEY=VALUE", help=OPTION_HELP)
    s.add_argument("--containers", action="store_true", help="also list Sequential/Parallel nodes")
    s.add_argument("--from", dest="from_", choices=FRAMEWORKS, metavar="FRAMEWORK", help=FROM_HELP)
    t = sub.add_parser("trace", help="trace your own model into a spec file", description=TRACE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("model", metavar="MODULE:CALLABLE")
    t.add_argument("--from", dest="from_", choices=FRAMEWORKS, metavar="FRAMEWORK", required=True,
                   help="torch, mxnet or keras")
    t.add_argument("--input-shape", type=parse_shape, metavar="C,H,W", help="needed unless the model records it "
                                                                            "(a built Keras model does)")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--out", required=True, metavar="FILE.json", help="where to write the spec file")
    t.add_argument("--weights", metavar="FILE", help="also write the model's weights (.safetensors or .npz)")
    c = sub.add_parser("code", help="write a model as readable source in a framework", description=CODE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("model", help=MODEL_HELP)
    c.add_argument("--framework", required=True, choices=("torch", "mxnet", "keras"))
    c.add_argument("--from", dest="from_", choices=FRAMEWORKS, metavar="FRAMEWORK", help=FROM_HELP)
    c.add_argument("--input-shape", type=parse_shape, metavar="C,H,W", help="default: the model's")
    c.add_argument("--option", type=parse_option, action="append", default=[], metavar="KEY=VALUE", help=OPTION_HELP)
    c.add_argument("--out", metavar="FILE.py", help="where to write the source (default: standard output)")
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
    fileio.check_output_path(args.out, "--out")
    model = models.resolve(args.model, input_shape=args.input_shape, options=dict(args.option))
    shapes.infer(model)  # a too small --input-shape fails here, naming the node
    specfile.save(model, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out):,} bytes): {model.name}, input "
          f"{'x'.join(map(str, model.input_shape))}")


def _trace(args) -> None:
    from . import weights
    from .trace.user import load_and_trace

    if not specfile.looks_like_spec_file(args.out):
        raise ValueError(f"--out {args.out}: a spec file's name ends in .json (so MODEL arguments recognise it)")
    fileio.check_output_path(args.out, "--out")
    if args.weights:
        fileio.check_output_path(args.weights, "--weights", (".safetensors", ".npz"))
    print(f"tracing {args.model} ({args.from_}) ...", file=sys.stderr, flush=True)
    traced = load_and_trace(args.model, args.from_, args.input_shape, args.dtype).traced
    specfile.save(traced.spec, args.out)
    counts = shapes.counts(traced.spec)
    leaves = sum(1 for _, node in traced.spec.walk() if not isinstance(node, S.CONTAINERS))
    print(f"wrote {args.out} ({os.path.getsize(args.out):,} bytes): {traced.spec.name}, {leaves} nodes, "
          f"{counts.trainable:,} trainable params, input {'x'.join(map(str, traced.spec.input_shape))}")
    if args.weights:
        weights.save(args.weights, traced.weights)
        print(f"wrote {args.weights} ({os.path.getsize(args.weights):,} bytes): {len(traced.weights)} arrays")


def _code(args) -> None:
    from .codegen import generate

    if args.from_ and args.option:
        raise ValueError("--option applies to zoo models, not to a traced model")
    if args.out:
        fileio.check_output_path(args.out, "--out")
    model = _summary_model(args)
    origin = f"{args.model}{' --from ' + args.from_ if args.from_ else ''}"
    origin += "".join(f" --option {k}={v}" for k, v in args.option)
    source = generate(model, args.framework, origin=origin)
    if not args.out:
        sys.stdout.write(source)
        return
    fileio.write_atomic(args.out, source)
    print(f"wrote {args.out} ({len(source.splitlines())} lines): {model.name} in {args.framework}", file=sys.stderr)


def _summary_model(args):
    if args.from_:
        from .trace.user import load_and_trace

        return load_and_trace(args.model, args.from_, args.input_shape).traced.spec
    return models.resolve(args.model, input_shape=args.input_shape, options=dict(args.option))


# Usage errors (exit 2). ValueError stays among them: the code generator and the
# spec-file reader refuse what they cannot do with a ValueError naming the node.
USAGE_ERRORS = (registry.UnknownModelError, registry.BadOptionError, ValueError, BackendUnavailableError,
                UnknownBackendError, CapabilityError)


def main(argv=None) -> int:
    """The exit code of `python -m refnets ARGS`: 0 done, 2 usage or environment
    error, 3 a bug (details with --debug), 130 interrupted (see `refnets.exits`)."""
    return exits.guarded(_main, argv, "refnets", USAGE_ERRORS)


def _main(argv) -> int:
    args = parser().parse_args(argv)
    if args.command == "list":
        for name in registry.list_models():
            counts = shapes.counts(registry.get_spec(name))
            print(f"{name:16s} {counts.trainable:>13,} trainable params")
    elif args.command == "export":
        _export(args)
    elif args.command == "trace":
        _trace(args)
    elif args.command == "code":
        _code(args)
    else:
        print(summary(_summary_model(args), containers=args.containers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
