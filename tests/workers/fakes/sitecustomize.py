"""Test-only faults for the worker tests, no hook in the product: a wrapper
interpreter (tests/workers/helpers.py) puts this directory on PYTHONPATH and sets
REFNETS_TEST_FAULT, and Python imports this module at start-up.

    block:a,b   the modules a and b cannot be imported (a missing safetensors, torch)
    segv|kill|exit|hang   a backend's forward and gradients die by SIGSEGV, SIGKILL,
                os._exit(7), or sleep past any timeout; its stream the same once
                it has handed over one node
    raise       a backend's forward raises RuntimeError(MESSAGE), and its stream
                raises the same after handing over two nodes

The faults go on the backend object `refnets.backends.get` returns in the worker,
so they hold for every backend, whichever class defines its methods.
"""

import os

FAULT = os.environ.get("REFNETS_TEST_FAULT", "")
MESSAGE = "test fault: the backend failed"


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


def _dying(backend):
    forward, gradients, stream = backend.forward, backend.gradients, backend.stream

    def dying_forward(*args, **kwargs):
        _die()
        return forward(*args, **kwargs)

    def dying_gradients(*args, **kwargs):
        _die()
        return gradients(*args, **kwargs)

    def dying_stream(net, x, capture, sink, train=False):
        def dying_sink(path, activation):
            sink(path, activation)
            _die()

        return stream(net, x, capture, dying_sink, train)

    backend.forward, backend.gradients, backend.stream = dying_forward, dying_gradients, dying_stream


def _raising(backend):
    forward, stream = backend.forward, backend.stream
    streaming = []  # non-empty inside a stream (the default one runs the forward first)

    def raising_forward(*args, **kwargs):
        if not streaming:
            raise RuntimeError(MESSAGE)
        return forward(*args, **kwargs)

    def raising_stream(net, x, capture, sink, train=False):
        handed = []

        def counting_sink(path, activation):
            if len(handed) == 2:
                raise RuntimeError(MESSAGE)
            handed.append(path)
            sink(path, activation)

        streaming.append(True)
        try:
            return stream(net, x, capture, counting_sink, train)
        finally:
            streaming.pop()

    backend.forward, backend.stream = raising_forward, raising_stream


def _install(fault_on):
    from refnets import backends

    get = backends.get

    def get_with_fault(*args, **kwargs):
        backend = get(*args, **kwargs)
        if not getattr(backend, "_test_fault", False):
            fault_on(backend)
            backend._test_fault = True
        return backend

    backends.get = get_with_fault


if FAULT.startswith("block:"):
    import sys

    for _name in FAULT[len("block:"):].split(","):
        sys.modules[_name] = None  # `import _name` now raises ImportError
elif FAULT == "raise":
    _install(_raising)
elif FAULT:
    _install(_dying)
