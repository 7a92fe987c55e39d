"""One exit code per outcome for every command line (`python -m parity` and its
subcommands, `python -m refnets`):

  0 all agree (or the command did what was asked) · 1 some disagree ·
  2 usage or environment error: one message, no traceback ·
  3 internal error: a bug; one line that says so, the traceback behind --debug
    or PARITY_DEBUG=1 · 130 interrupted (Ctrl-C); output files are written
    atomically, so nothing is half-written.
  (141 when the reader of standard output went away, `| head`: no message.)

`guarded(main, argv, ...)` runs a command's `main(argv) -> int` under these
rules. Imports no framework."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, List, Optional, Sequence, Tuple, Type

OK, DISAGREE, USAGE, INTERNAL, INTERRUPTED = 0, 1, 2, 3, 130
BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe
DEBUG_FLAG = "--debug"
DEBUG_ENV = "PARITY_DEBUG"
DEBUG_HELP = f"on an internal error (exit 3) print the traceback (also {DEBUG_ENV}=1)"


def debug_requested(argv: Sequence[str]) -> bool:
    """--debug among the arguments (before a `--`), or PARITY_DEBUG set to a true value."""
    args = list(argv)
    head = args[:args.index("--")] if "--" in args else args
    return DEBUG_FLAG in head or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def strip_debug(argv: Sequence[str]) -> List[str]:
    """`argv` without --debug (before a `--`): every parser accepts it through here."""
    args = list(argv)
    cut = args.index("--") if "--" in args else len(args)
    return [a for a in args[:cut] if a != DEBUG_FLAG] + args[cut:]


def guarded(main: Callable[[List[str]], int], argv: Optional[Sequence[str]], prog: str,
            usage_errors: Tuple[Type[BaseException], ...] = ()) -> int:
    """`main(argv)` with --debug removed, its exceptions turned into exit codes."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debug_requested(argv)
    try:
        return main(strip_debug(argv))
    except SystemExit:
        raise  # argparse: --help (0) and usage errors (2) carry their own code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (no output file was left half-written)", file=sys.stderr)
        return INTERRUPTED
    except usage_errors as err:
        _traceback(debug)
        print(f"error: {err}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:  # stdout closed by the reader (`| head`): stop quietly, as a killed pipe writer would
        _silence_stdout()
        return BROKEN_PIPE
    except MemoryError as err:
        _traceback(debug)
        print(f"error: out of memory{': ' + str(err) if str(err) else ''} (try a smaller --batch or "
              f"--input-shape, or fewer backends)", file=sys.stderr)
        return USAGE
    except OSError as err:  # the environment: a full disk, a file that vanished, a permission
        _traceback(debug)
        print(f"error: {err}", file=sys.stderr)
        return USAGE
    except Exception as err:
        _traceback(debug)
        print(internal_error_line(prog, err, debug), file=sys.stderr)
        return INTERNAL


def internal_error_line(prog: str, err: BaseException, debug: bool) -> str:
    details = "the traceback is above" if debug else f"run again with {DEBUG_FLAG} (or {DEBUG_ENV}=1) to see the traceback"
    message = str(err).splitlines()[0] if str(err) else ""
    return (f"{prog}: internal error, a bug in {prog} (please report it): {type(err).__name__}"
            f"{': ' + message if message else ''}; {details}")


def _silence_stdout() -> None:
    """Point standard output at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test's capture): nothing will flush into the pipe
        pass


def _traceback(debug: bool) -> None:
    if debug:
        traceback.print_exc()
