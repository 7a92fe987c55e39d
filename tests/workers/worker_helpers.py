"""Wrapper interpreters for the worker tests: a shell script that runs this Python
with tests/workers/fakes on PYTHONPATH and a fault chosen by REFNETS_TEST_FAULT."""

import os
import sys

FAKES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakes")


def wrapper(directory, fault: str = "", python: str = sys.executable, name: str = "python") -> str:
    path = os.path.join(str(directory), name)
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\n"
                     f'export PYTHONPATH="{FAKES}${{PYTHONPATH:+:$PYTHONPATH}}"\n'
                     f'export REFNETS_TEST_FAULT="{fault}"\n'
                     f'exec "{python}" "$@"\n')
    os.chmod(path, 0o755)
    return path
