"""The `--bench` and `--fit` flags of `python -m parity` (choosing a framework):

    python -m parity MODEL [--backends ...] --bench [--batch 1,16] [--train] [--repeats N]
                     [--threads N] [--json FILE] [--plot FILE.png]
    python -m parity MODEL [--backends ...] --fit [--data digits|mnist:DIR|fashion-mnist:DIR|cifar10:DIR]
                     [--epochs N] [--batch N] [--lr LR] [--optimizer sgd|momentum] [--limit N]
                     [--json FILE] [--plot FILE.png]

MODEL is a zoo name, a spec file, or MODULE:CALLABLE with --from (traced, with
its own weights). parity/cli.py calls `add_flags(parser)` and, when
`selected(args)`, `run(args, progress)`.
"""

from __future__ import annotations

import argparse
import os

from refnets import backends as B

from ..engine.config import ParityUsageError, check_backends, resolve_backends, resolve_model
from ..outputs import check_output_path, write_atomic
from ..engine.preflight import check_batch_flag
from . import bench as bench_mod
from . import fit as fit_mod

# Flags of the other modes, refused with --bench / --fit rather than ignored: (dest, flag, its default).
FOREIGN = (("grad", "--grad", False), ("train_steps", "--train-steps", None), ("against", "--against", None),
           ("port", "--port", None), ("save_weights", "--save-weights", None), ("layers", "--layers", False),
           ("inference", "--inference", False), ("floor", "--floor", False), ("rtol", "--rtol", None),
           ("atol", "--atol", None), ("tf32", "--tf32", False), ("device", "--device", "cpu"))


def batch_sizes(text: str):
    """--batch: one size (an int), or with --bench several, comma-separated (a tuple)."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a batch size, or with --bench several: 1,16") from None
    return sizes[0] if len(sizes) == 1 else sizes  # sizes < 1: refused in one line by the run's checks


class NotGiven(str):
    """The parser's default --optimizer ("sgd"), told apart from one the user gave."""


class NotGivenRate(float):
    """The parser's default --lr (that of --train-steps), told apart from one the user gave."""


def add_flags(parser: argparse.ArgumentParser) -> None:
    # --fit has its own defaults for --optimizer and --lr; the parser's stay the others'
    parser.set_defaults(optimizer=NotGiven(parser.get_default("optimizer")),
                        lr=NotGivenRate(parser.get_default("lr")))
    group = parser.add_argument_group("choosing a framework (instead of the comparison)")
    modes = group.add_mutually_exclusive_group()
    modes.add_argument("--bench", action="store_true",
                       help="speed and memory of each backend, each in a fresh worker with the same threads: "
                            "import, build, inference latency and throughput per --batch size (default "
                            f"{','.join(map(str, bench_mod.DEFAULT_BATCHES))}), with --train one training step, "
                            "peak memory; medians and ratios to the best")
    modes.add_argument("--fit", action="store_true",
                       help="train MODEL on real data in every backend from the same weights on the same batches: "
                            "loss, test accuracy and seconds per epoch, and how far the curves drift apart "
                            f"(default --optimizer {fit_mod.DEFAULT_OPTIMIZER} --lr {fit_mod.DEFAULT_LR:g}, "
                            + ", ".join(f"{m} {lr:g}" for m, lr in fit_mod.MODEL_LR.items())
                            + f"; --batch {fit_mod.DEFAULT_BATCH})")
    group.add_argument("--repeats", type=int, default=bench_mod.DEFAULT_REPEATS,
                       help=f"--bench: timed repeats of each figure (default {bench_mod.DEFAULT_REPEATS}, after "
                            f"{bench_mod.WARMUP} warm-up)")
    group.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                       help="--bench, --fit: threads per backend worker (OMP/MKL/TF intra-op; default: the cores, "
                            f"{os.cpu_count()}); on a busy machine 1 can be many times faster")
    group.add_argument("--data", default="digits", metavar="digits|mnist:DIR|fashion-mnist:DIR|cifar10:DIR",
                       help="--fit: the data set (default digits: scikit-learn's 8x8 digits, no download; "
                            "the others read from files you have)")
    group.add_argument("--epochs", type=int, default=fit_mod.DEFAULT_EPOCHS,
                       help=f"--fit: epochs (default {fit_mod.DEFAULT_EPOCHS})")
    group.add_argument("--limit", type=int, metavar="N", help="--fit: the first N training and N test images only")
    group.add_argument("--plot", metavar="FILE.png", help="--bench: a bar chart; --fit: the loss and accuracy curves")


def selected(args) -> bool:
    """Whether this is a --bench or --fit run; a flag of theirs without them is a usage error."""
    if args.bench or args.fit:
        return True
    if isinstance(args.batch, tuple):
        raise ParityUsageError("several batch sizes (--batch 1,16) only with --bench")
    if args.plot:
        raise ParityUsageError("--plot only with --bench or --fit")
    return False


def _check(args) -> None:
    used = [flag for dest, flag, default in FOREIGN if getattr(args, dest) != default]
    if args.fit and args.train:
        used.append("--train")
    if used:
        raise ParityUsageError(f"{', '.join(used)} does not apply to --{'bench' if args.bench else 'fit'}")
    if args.fit and isinstance(args.batch, tuple):
        raise ParityUsageError("--fit trains with one batch size")
    check_batch_flag(args.batch)
    for flag, value in (("--repeats", args.repeats), ("--threads", args.threads), ("--epochs", args.epochs),
                        ("--limit", 1 if args.limit is None else args.limit)):
        if value < 1:
            raise ParityUsageError(f"{flag} must be at least 1, got {value}")
    if args.fit and not args.lr > 0:
        raise ParityUsageError(f"--lr must be > 0, got {args.lr!r}")
    check_output_path(args.json, "--json")
    check_output_path(args.plot, "--plot", (".png",))


def _model(args, dtype: str):
    """(spec, weights or None): a zoo model, a spec file, or the user's traced model."""
    if args.from_:
        from refnets.trace.user import load_and_trace

        user = load_and_trace(args.model, args.from_, args.input_shape, dtype)
        return user.traced.spec, user.traced.weights
    return resolve_model(args.model, args.input_shape, dict(args.option)), args.weights


def run(args, progress) -> int:
    _check(args)
    if args.plot:
        from .plots import pyplot

        pyplot()  # the [plot] extra: missing is exit 2 before the run, not after it
    return _bench(args, progress) if args.bench else _fit(args, progress)


def _bench(args, progress) -> int:
    from . import report

    dtype = args.dtype or "float32"
    model, weights = _model(args, dtype)
    batches = args.batch if isinstance(args.batch, tuple) else (args.batch,) if args.batch else bench_mod.DEFAULT_BATCHES
    labels = check_backends(args.backends or B.installed())
    if args.reference:
        labels = [B.canonical_label(args.reference)] + [b for b in labels if b != B.canonical_label(args.reference)]
    result = bench_mod.run_bench(model, labels, batches, args.repeats, threads=args.threads, train=args.train,
                                 dtype=dtype, seed=args.seed, weights=weights, progress=progress)
    print(report.bench_text(result))
    if args.json:
        write_atomic(args.json, report.dumps(report.bench_json(result)))
    if args.plot and result.backends:
        from .plots import bench_png

        write_atomic(args.plot, bench_png(result))
    return result.exit_code


def _fit(args, progress) -> int:
    from . import data, report

    if args.dtype not in (None, "float32"):
        raise ParityUsageError("--fit trains in float32")
    model, weights = _model(args, "float32")
    dataset = data.load(args.data, model.input_shape, args.limit)
    labels = resolve_backends(args.backends, args.reference)
    optimizer = fit_mod.DEFAULT_OPTIMIZER if isinstance(args.optimizer, NotGiven) else args.optimizer
    lr = fit_mod.default_lr(args.model) if isinstance(args.lr, NotGivenRate) else args.lr
    result = fit_mod.run_fit(model, dataset, labels, args.epochs, args.batch or fit_mod.DEFAULT_BATCH, optimizer,
                             lr, args.momentum, args.seed, weights, args.threads, progress)
    print(report.fit_text(result))
    if args.json:
        write_atomic(args.json, report.dumps(report.fit_json(result)))
    if args.plot:
        from .plots import fit_png

        write_atomic(args.plot, fit_png(result))
    return 0

