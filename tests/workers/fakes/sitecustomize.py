"""Test-only faults for the worker tests, no hook in the product: a wrapper
interpreter (tests/workers/helpers.py) puts this directory on PYTHONPATH and sets
REFNETS_TEST_FAULT, and Python imports this module at start-up.

    block:a,b   the modules a and b cannot be imported (a missing safetensors, torch)
    segv|kill|exit|hang   a backend's forward and gradients die by SIGSEGV, SIGKILL,
                os._exit(7), or sleep past any timeout
"""

import os

FAULT = os.environ.get("REFNETS_TEST_FAULT", "")


def _die():
    import signal
    import time

    if FAULT == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif FAULT == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif FAULT == "exit":
        os._exit(7)
    elif FAULT == "hang":
        time.sleep(3600)


def _install():
    from refnets.backends import base

    forward, gradients = base.ModuleBackend.forward, base.ModuleBackend.gradients

    def dying_forward(self, *args, **kwargs):
        _die()
        return forward(self, *args, **kwargs)

    def dying_gradients(self, *args, **kwargs):
        _die()
        return gradients(self, *args, **kwargs)

    base.ModuleBackend.forward, base.ModuleBackend.gradients = dying_forward, dying_gradients


if FAULT.startswith("block:"):
    import sys

    for _name in FAULT[len("block:"):].split(","):
        sys.modules[_name] = None  # `import _name` now raises ImportError
elif FAULT:
    _install()
