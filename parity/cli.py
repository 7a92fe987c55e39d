"""python -m parity MODEL [--backends torch,mxnet,keras] ... : do the frameworks agree?
(MODEL: a zoo model's name or a spec file, model.json, see python -m refnets export)
python -m parity MODEL --against ZOO [--backends ...] ...     : does our model compute
what the framework's own zoo model computes? (ZOO: keras, gluon, torchvision;
MODEL: our name or the zoo's; `--list --against ZOO` lists what a zoo reproduces)
python -m parity MODEL --port MODULE:CALLABLE [--port-backend torch]: does your own
hand-written model (CALLABLE returns it; MODULE may be a .py file) compute what
MODEL computes? Our weights are mapped onto it by structure, not names.
python -m parity MODULE:CALLABLE --from FRAMEWORK [--input-shape C,H,W] [--backends ...]:
a verified conversion: your own torch / mxnet / keras model is traced into the
spec, built in every backend with its own weights, and compared with itself.
python -m parity MODEL --grad [--inference] | --train | --train-steps N [--optimizer
sgd|momentum] [--lr LR] [--momentum M] ... : do they also learn the same way?
(gradients; one training-mode step with its BatchNorm statistics; N optimiser
steps. Dropout runs as identity; default batch 8 and float64, see the README)

Backends in worker processes: --python NAME=PATH runs backend NAME in its own
process in that interpreter (repeatable; also REFNETS_PYTHON="mxnet=/path/bin/python"
or a [python] table in ./refnets.toml or ~/.config/refnets/config.toml); --workers
runs every backend in its own process, the default here (--in-process: all in this
one, as the library does). A backend whose worker dies (a crash, out of memory,
--worker-timeout) is reported as failed; the others still are.

Exit codes: 0 all backends agree within tolerance, 1 some disagree, 2 usage or
environment error (one message: a bad flag or file, a backend failed, a run that
would not fit in memory, your own model raised), 3 internal error (a bug in parity:
one line; --debug or PARITY_DEBUG=1 prints the traceback), 130 interrupted (Ctrl-C;
output files are written whole or not at all). The same for `parity fuzz` and
`parity matrix`. A run's memory is estimated before it starts and a run that cannot
fit is refused; PARITY_SKIP_MEMORY_CHECK=1 skips that check."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from refnets import exits, registry, workers, zoo_import
from refnets.cliargs import parse_option, parse_python_pair, parse_shape
from refnets.trace.user import load_and_trace
from refnets.userload import is_callable_ref

from refnets.backends import catalog

from .choose import cli as choose
from .conformance import run_against
from .engine import preflight
from .engine.config import (DTYPES, USAGE_ERRORS, ParityUsageError, check_backends, configure_pythons,
                            place_backends)
from .inference import run
from .outputs import WEIGHT_SUFFIXES, check_output_path
from .port import run_port
from .reports import inference as report
from .reports import port as port_report
from .reports import training as training_report
from .traced import run_traced
from .training import (DEFAULT_BATCH, DEFAULT_DTYPE, DEFAULT_LR, DEFAULT_MOMENTUM, OPTIMIZERS, run_grad, run_train,
                       run_train_steps)

INFERENCE_BATCH, INFERENCE_DTYPE = 2, "float32"


def _backends(text: str):
    return [b.strip() for b in text.split(",") if b.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parity", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="model name (see --list), a spec file (.json, as python -m refnets export "
                                            "writes it; weights seeded as a zoo model's), or MODULE:CALLABLE with --from")
    p.add_argument("--from", dest="from_", metavar="FRAMEWORK", choices=catalog.frameworks_with("read"),
                   help="MODEL is MODULE:CALLABLE returning your own model in this framework (torch, mxnet, "
                        "keras): trace it and compare every backend with it")
    p.add_argument("--list", action="store_true", help="list the models and exit")
    p.add_argument("--backends", type=_backends,
                   help="comma-separated, default: every installed backend; a backend on a GPU is NAME:cuda "
                        "(torch:cuda), so --backends torch:cuda,torch compares torch on the GPU with torch on the CPU")
    p.add_argument("--reference", help="backend the others are compared with (default: the first)")
    p.add_argument("--against", metavar="ZOO", choices=tuple(catalog.ZOOS),
                   help="compare every backend with this zoo's own model (keras, gluon, torchvision): its own "
                        "initialisation, BatchNorm randomised, weights imported")
    p.add_argument("--port", metavar="MODULE:CALLABLE",
                   help="check your own native model (CALLABLE() returns it) against MODEL")
    p.add_argument("--port-backend", choices=catalog.frameworks_with("read"), default="torch",
                   help="the framework of the --port model (default torch)")
    p.add_argument("--batch", type=choose.batch_sizes,
                   help=f"default {INFERENCE_BATCH}; {DEFAULT_BATCH} for --grad, --train, --train-steps")
    p.add_argument("--input-shape", type=parse_shape, metavar="C,H,W", help="default: the model's")
    p.add_argument("--dtype", choices=DTYPES,
                   help=f"default {INFERENCE_DTYPE}; {DEFAULT_DTYPE} for --grad, --train, --train-steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rtol", type=float, help="default per dtype, see the README")
    p.add_argument("--atol", type=float)
    p.add_argument("--weights", metavar="FILE", help="canonical weights (.safetensors or .npz) instead of seeded ones")
    p.add_argument("--save-weights", metavar="FILE", help="save the canonical weights used")
    p.add_argument("--layers", action="store_true",
                   help="print the per-node (training runs: per-parameter) comparison even when all agree "
                        "(inference: each backend's forward is then its capturing one)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--option", type=parse_option, action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. num_classes=10 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda[:N]",
                   help="run every chosen backend that can (torch) on this device, the others on the CPU "
                        "(default cpu); the report says where each ran")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 on the GPU (off by default: it puts float32 outputs about 1e-3 of max|ref| away, "
                        "far outside the float32 tolerance)")
    p.add_argument(exits.DEBUG_FLAG, action="store_true", help=exits.DEBUG_HELP)
    add_worker_flags(p)
    training = p.add_argument_group("training (instead of the inference comparison)")
    modes = training.add_mutually_exclusive_group()
    modes.add_argument("--grad", action="store_true",
                       help="compare d loss / d input and every parameter's gradient (mean cross-entropy, seeded "
                            "labels), in training mode")
    modes.add_argument("--train", action="store_true",
                       help="compare one training-mode step: logits, loss, BatchNorm running statistics after it")
    modes.add_argument("--train-steps", type=int, metavar="N",
                       help="compare N optimiser steps on the same seeded batches: every loss and the weights "
                            "after every step")
    training.add_argument("--inference", action="store_true",
                          help="with --grad: gradients in inference mode (BatchNorm on running statistics)")
    training.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                          help="with --train-steps: plain SGD or heavy-ball momentum (default sgd)")
    training.add_argument("--lr", type=float, default=DEFAULT_LR,
                          help=f"with --train-steps: learning rate (default {DEFAULT_LR!r} = 2^-10)")
    training.add_argument("--momentum", type=float, default=DEFAULT_MOMENTUM,
                          help=f"with --optimizer momentum (default {DEFAULT_MOMENTUM:g})")
    training.add_argument("--floor", action="store_true",
                          help="with --train-steps: also train the reference from weights one rounding unit apart "
                               "and report how far it drifts from itself per step (the verdict is unchanged)")
    choose.add_flags(p)
    return p


def add_worker_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("worker processes")
    group.add_argument("--python", type=parse_python_pair, action="append", default=[], metavar="NAME=PATH",
                       help="run backend NAME in a worker process in this interpreter, e.g. "
                            "mxnet=/legacy/venv/bin/python (repeatable; overrides REFNETS_PYTHON and the config file)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--workers", dest="worker_mode", action="store_const", const="workers",
                       help="run every backend in its own worker process, in this interpreter unless --python names "
                            f"one (the default, unless {workers.config.ENV_MODE}=0)")
    where.add_argument("--in-process", dest="worker_mode", action="store_const", const="in-process",
                       help="run the backends that have no --python of their own in this process")
    group.add_argument("--worker-timeout", type=float, metavar="SECONDS",
                       help=f"seconds one step of a worker may take before it is killed and reported as failed "
                            f"(default {workers.config.DEFAULT_TIMEOUT:g}, or {workers.config.ENV_TIMEOUT})")


# Every backend in a worker unless told otherwise: measured faster in wall time on the
# three frameworks (their imports overlap; no OpenMP pool shared between them), half
# the largest process, and a crash or TensorFlow-vs-triton clash takes one backend
# with it, not the run (benchmarks/workers.py, README). The library keeps its own
# default (in-process): `refnets.backends.get` returns native models.
CLI_WORKER_MODE = "workers"


def configure_workers(args) -> None:
    """The worker flags of this run (each run sets them afresh): --workers or
    --in-process, else REFNETS_WORKERS, else CLI_WORKER_MODE."""
    configure_pythons(args.python)
    env_mode = os.environ.get(workers.config.ENV_MODE, "").strip()
    workers.set_mode(args.worker_mode or (None if env_mode else CLI_WORKER_MODE))
    workers.config.set_timeout(args.worker_timeout)


def _progress(message: str) -> None:
    print(f"[parity] {message} ...", file=sys.stderr, flush=True)


def _run_port(args, progress) -> int:
    for flag, value in (("--against", args.against), ("--backends", args.backends),
                        ("--save-weights", args.save_weights), ("--device", None if args.device == "cpu" else args.device),
                        ("--tf32", args.tf32 or None)):
        if value is not None:
            raise ParityUsageError(f"{flag} does not apply to a port check (the reference backend is --reference, "
                                   f"default the --port-backend)")
    model, native = args.model, None
    if args.from_:
        for flag, value in (("--weights", args.weights), ("--reference", args.reference)):
            if value is not None:
                raise ParityUsageError(f"{flag} does not apply to a port against your own model: its weights and "
                                       f"framework are the reference")
        if progress:
            progress(f"tracing the reference {args.model} ({args.from_})")
        native = load_and_trace(args.model, args.from_, args.input_shape, _or(args.dtype, INFERENCE_DTYPE))
        model = native.traced.spec
    _check_memory(args, model, None, backends=(args.reference or args.port_backend, args.port_backend))
    result = run_port(model, args.port, native_reference=native,
                      weights=native.traced.weights if native else args.weights,
                      reference=args.from_ if native else args.reference, port_backend=args.port_backend,
                      batch=_or(args.batch, INFERENCE_BATCH), input_shape=args.input_shape,
                      dtype=_or(args.dtype, INFERENCE_DTYPE), seed=args.seed,
                      rtol=args.rtol, atol=args.atol, layers=args.layers,
                      options=dict(args.option), progress=progress)
    print(port_report.text(result, all_layers=args.layers))
    if args.json:
        port_report.write_json(result, args.json)
    return result.exit_code


# Subcommands: `python -m parity fuzz ...`, `python -m parity matrix ...`. Each is a
# module with `main(argv) -> int`, imported only when asked for.
SUBCOMMANDS = {"fuzz": "parity.fuzz.cli", "matrix": "parity.matrix.cli"}


def main(argv=None) -> int:
    """The exit code of `python -m parity ARGS` (and of its subcommands): see
    `refnets.exits` (0 agree, 1 disagree, 2 usage, 3 a bug, 130 Ctrl-C)."""
    return exits.guarded(_dispatch, argv, "parity", USAGE_ERRORS)


def _dispatch(argv) -> int:
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
        args = parser().parse_args(argv)
        return _main(args)
    except KeyboardInterrupt:
        workers.kill_all()  # Ctrl-C: stop the workers now, not after their current step
        raise
    finally:
        workers.config.reset()  # the worker flags were this run's


def _main(args) -> int:
    if args.list:
        print("\n".join(zoo_import.supported(args.against) if args.against else registry.list_models()))
        return 0
    if not args.model:
        print("error: name a model (see python -m parity --list)", file=sys.stderr)
        return 2
    progress = None if args.quiet else _progress
    mode = "grad" if args.grad else "train" if args.train else "train-steps" if args.train_steps is not None else None
    if choose.selected(args):
        configure_workers(args)
        return choose.run(args, progress)
    _preflight(args, mode)
    if args.from_ and not args.port:
        return _run_traced(args, mode, progress)
    if is_callable_ref(args.model) and not args.from_:
        raise ParityUsageError(f"{args.model} names your own model: say its framework with --from "
                               f"{'|'.join(catalog.frameworks_with('read'))}")
    if args.port:
        return _run_port(args, progress)
    if mode:
        return _training(args, mode, progress)
    return _inference(args, progress)


def _preflight(args, mode) -> None:
    """Everything that can be told wrong before any work: flags, numbers, output paths, backends."""
    configure_workers(args)
    _check_flags(args, mode)
    preflight.check_numbers(args)
    check_output_path(args.json, "--json")
    check_output_path(args.save_weights, "--save-weights", WEIGHT_SUFFIXES)
    if args.backends == []:
        raise ParityUsageError("--backends names no backend: give a comma-separated list, e.g. numpy,torch")
    if not args.port:
        args.backends = place_backends(args.backends and check_backends(args.backends), args.device, args.tf32)


def _inference(args, progress) -> int:
    """The inference comparison of our backends (with --against: and the zoo's own model)."""
    _check_memory(args, args.model, None, extra=1 if args.against else 0)
    if args.against:
        for flag, value in (("--reference", args.reference), ("--weights", args.weights)):
            if value is not None:
                raise ParityUsageError(f"{flag} does not apply to a zoo run: the zoo model is the reference "
                                       f"and its weights are the ones compared")
        result = run_against(args.model, args.against, backends=args.backends,
                             batch=_or(args.batch, INFERENCE_BATCH), input_shape=args.input_shape,
                             dtype=_or(args.dtype, INFERENCE_DTYPE), seed=args.seed, rtol=args.rtol,
                             atol=args.atol, save_weights=args.save_weights, layers=args.layers,
                             options=dict(args.option), progress=progress, tf32=args.tf32)
    else:
        result = run(args.model, backends=args.backends, reference=args.reference,
                     batch=_or(args.batch, INFERENCE_BATCH), input_shape=args.input_shape,
                     dtype=_or(args.dtype, INFERENCE_DTYPE), seed=args.seed, rtol=args.rtol,
                     atol=args.atol, weights=args.weights, save_weights=args.save_weights, layers=args.layers,
                     options=dict(args.option), progress=progress, tf32=args.tf32)
    print(report.text(result, all_nodes=args.layers))
    if args.json:
        report.write_json(result, args.json)
    return result.exit_code


def _or(value, default):
    return default if value is None else value


def _check_memory(args, model, mode, extra=0, backends=None) -> None:
    """Refuse before any work a run that cannot fit in memory (see preflight)."""
    batch = _or(args.batch, DEFAULT_BATCH if mode else INFERENCE_BATCH)
    dtype = _or(args.dtype, DEFAULT_DTYPE if mode else INFERENCE_DTYPE)
    try:
        preflight.check_run_memory(model, args, backends or args.backends, batch, dtype, training=mode is not None,
                                   extra_models=extra)
    except registry.UnknownModelError:
        if not args.against:  # a zoo's own name (--against): the run resolves it
            raise


def _check_flags(args, mode) -> None:
    """Flags that belong to another mode are usage errors, not silently ignored."""
    if mode and (args.against or args.port):
        raise ParityUsageError(f"--{mode} compares our backends with each other; it does not combine with "
                               f"{'--against' if args.against else '--port'}")
    if mode and args.save_weights:
        raise ParityUsageError("--save-weights applies to the inference run; the training runs start from the "
                               "same seeded weights (or --weights FILE)")
    if args.inference and mode != "grad":
        raise ParityUsageError("--inference applies to --grad only")
    defaults = {"optimizer": "sgd", "lr": DEFAULT_LR, "momentum": DEFAULT_MOMENTUM, "floor": False}
    changed = [f"--{k}" for k, v in defaults.items() if getattr(args, k) != v]
    if changed and mode != "train-steps":
        raise ParityUsageError(f"{', '.join(changed)}: only with --train-steps")
    if args.momentum != DEFAULT_MOMENTUM and args.optimizer != "momentum":
        raise ParityUsageError("--momentum applies to --optimizer momentum only")


def _run_traced(args, mode, progress) -> int:
    """MODEL is the user's MODULE:CALLABLE: inference against the model itself, or a
    training mode over the traced spec (with the model's weights) in every backend."""
    for flag, value in (("--against", args.against), ("--weights", args.weights), ("--option", args.option or None),
                        ("--save-weights", args.save_weights)):
        if value is not None:
            raise ParityUsageError(f"{flag} does not apply to your own model (--from): its weights are the ones "
                                   f"compared")
    if not mode:
        if args.reference is not None:
            raise ParityUsageError("--reference does not apply to --from: your own model is the reference")
        result = run_traced(args.model, args.from_, backends=args.backends, batch=_or(args.batch, INFERENCE_BATCH),
                            input_shape=args.input_shape, dtype=_or(args.dtype, INFERENCE_DTYPE), seed=args.seed,
                            rtol=args.rtol, atol=args.atol, layers=args.layers, progress=progress, tf32=args.tf32)
        print(report.text(result, all_nodes=args.layers))
        if args.json:
            report.write_json(result, args.json)
        return result.exit_code
    if progress:
        progress(f"tracing {args.model} ({args.from_})")
    user = load_and_trace(args.model, args.from_, args.input_shape, _or(args.dtype, DEFAULT_DTYPE))
    return _training(args, mode, progress, model=user.traced.spec, weights=user.traced.weights)


def _training(args, mode, progress, model=None, weights=None) -> int:
    model = args.model if model is None else model
    _check_memory(args, model, mode)
    common = dict(backends=args.backends, reference=args.reference, batch=_or(args.batch, DEFAULT_BATCH),
                  input_shape=args.input_shape, dtype=_or(args.dtype, DEFAULT_DTYPE), seed=args.seed,
                  rtol=args.rtol, atol=args.atol, weights=_or(weights, args.weights), options=dict(args.option),
                  progress=progress, tf32=args.tf32)
    if mode == "grad":
        result = run_grad(model, train=not args.inference, **common)
    elif mode == "train":
        result = run_train(model, **common)
    else:
        result = run_train_steps(model, args.train_steps, optimizer=args.optimizer, lr=args.lr,
                                 momentum=args.momentum, floor=args.floor, **common)
    print(training_report.text(result, all_params=args.layers))
    if args.json:
        training_report.write_json(result, args.json)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
