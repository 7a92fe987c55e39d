"""`python -m parity fuzz`: differential fuzzing against the numpy reference.

Exit codes: 0 no unexplained disagreement, 1 at least one, 2 a usage or environment
error (said in one line before anything runs), 130 on Ctrl-C (the summary so far is
printed; reproducers already written are complete).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from refnets import backends, workers

from ..outputs import ParityUsageError, check_output_path
from .campaign import Campaign, summary
from .run import DTYPES, ORACLE

DESCRIPTION = """Random valid specs over the whole vocabulary (kernels, strides, dilations, groups,
asymmetric and 'same' padding, ceil_mode, count_include_pad, zero pad vs pool padding,
BatchNorm eps and affine, add/concat branches, shared layers, flatten, adaptive pool,
dense, activations, small odd inputs), each built in every backend with seeded canonical
weights and compared with the numpy reference under the parity tolerances. Case i of
seed S is always the same spec. Every disagreement is shrunk to a minimal reproducer
(spec, weights, input, outputs, standalone scripts) under --out and classified: a known
framework bug (parity/fuzz/known.py) or ours. Exit 0: no unexplained disagreement;
1: at least one; 2: usage error."""


class UsageError(ValueError):
    pass


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m parity fuzz", description=DESCRIPTION)
    p.add_argument("--count", type=int, default=100, help="number of random specs (default 100)")
    p.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    p.add_argument("--backends", default=None,
                   help="comma-separated backends to test (default: every installed framework)")
    p.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="existing directory for the reproducers (default: none are written)")
    p.add_argument("--shrink-limit", type=int, default=20, metavar="N",
                   help="shrink and save the first N failures; later ones are counted as found (default 20)")
    p.add_argument("--no-shrink", dest="shrink", action="store_false", help="save failures as found")
    p.add_argument("--workers", action="store_true",
                   help="run every backend in a worker process (default: in this process, faster)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def check_args(args) -> List[str]:
    """The backends to test; UsageError for a bad count, backend or output directory."""
    if args.count < 1:
        raise UsageError(f"--count must be at least 1, got {args.count}")
    if args.shrink_limit < 0:
        raise UsageError(f"--shrink-limit must be 0 or more, got {args.shrink_limit}")
    if args.seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {args.seed}")
    if args.out is not None:
        if not os.path.isdir(args.out):
            raise UsageError(f"--out {args.out}: not an existing directory (create it first)")
        check_output_path(os.path.join(args.out, "verdict.json"), "--out")  # writable
    labels = backends.installed() if args.backends is None else [b.strip() for b in args.backends.split(",")]
    if not labels or any(not label for label in labels):
        raise UsageError("--backends needs at least one backend name"
                         if args.backends is not None else "no framework backend is installed")
    for label in labels:
        try:
            backends.check_name(label)
        except backends.UnknownBackendError as err:
            raise UsageError(str(err)) from err
        if label.partition(":")[0] == ORACLE:
            raise UsageError("numpy is the reference every backend is compared with; name frameworks")
        if not backends.is_installed(label):
            raise UsageError(f"backend {label!r} is not installed "
                             f"({backends.catalog.BACKENDS[label.partition(':')[0]].install})")
    return labels


def _progress_printer(stream):
    tty = stream.isatty()

    def show(campaign: Campaign, done: int) -> None:
        tally = campaign.tally
        line = (f"fuzz {done}/{campaign.count}  agree {tally.total('agree')}  unsupported "
                f"{tally.total('unsupported')}  disagree {tally.total('disagree') + tally.total('error')}  "
                f"({len(campaign.unexplained)} unexplained)  {campaign.seconds:.0f} s")
        if tty:
            stream.write("\r" + line + "\x1b[K")
            if done == campaign.count:
                stream.write("\n")
        elif done == campaign.count or done % max(1, campaign.count // 10) == 0:
            stream.write(line + "\n")
        stream.flush()
    return show


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as stop:  # argparse: 0 for --help, 2 for a usage error
        return int(stop.code or 0)
    try:
        labels = check_args(args)
        if args.workers:
            workers.config.set_mode("workers")
        for label in labels:
            backends.get(label)  # import each framework now: a broken install is a usage error
    except (UsageError, ParityUsageError, backends.BackendUnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    dtypes = DTYPES if args.dtype == "both" else (args.dtype,)
    campaign = Campaign(args.seed, args.count, labels, dtypes, args.out, do_shrink=args.shrink,
                        shrink_limit=args.shrink_limit)
    progress = (lambda c, i: None) if args.quiet else _progress_printer(sys.stderr)
    try:
        campaign.run(progress)
    except KeyboardInterrupt:
        print("\ninterrupted; the cases run so far:", file=sys.stderr)
        print(summary(campaign))
        return 130
    finally:
        if args.workers:
            workers.config.reset()
    print(summary(campaign))
    return 1 if campaign.unexplained else 0
