"""The backend contract, and the per-node converter registry every backend builds with.

A backend is one package under `refnets/backends/` holding a `Backend` subclass
and one catalog record (`catalog.py`). Its framework is imported only inside
that package. The contract (channels-first numpy in and out, canonical weights):

    build(model: ModelSpec, dtype="float32") -> native model
    get_weights(net) -> canonical weights          set_weights(net, weights)  (all-or-nothing)
    forward(net, x, capture=(), train=False) -> (output, {path: activation})
    stream(net, x, capture, sink, train=False) -> output      sink(path, activation) per node
    count_params(net) -> (trainable, total)         versions() -> {package: version}
    gradients(net, x, labels, train=False) -> Gradients        capability "gradients"
    Trainer(net, optimizer, lr, momentum=0.0).step(x, labels) -> loss   capability "training"

`forward` never changes the model: with `train=True` BatchNorm normalises with
the batch statistics, and the running statistics are left as they were.
`gradients` and `Trainer.step` are a training step: in training mode they update
the BatchNorm running statistics by the spec's rule (`spec.BatchNorm`), whatever
the framework's own rule. The loss is the mean softmax cross-entropy of the
logits over the batch; labels are integer class indices.

`stream` is a capturing forward that hands each captured node's output to
`sink(path, activation)` as soon as the backend has it, instead of holding every
capture until the end: once per path (a shared node's first call), in execution
order, as a channels-first numpy array nothing writes to afterwards. The sink
may block (the caller's back-pressure: parity compares node by node while
several backends run) and may keep or drop the array. The default calls
`forward` and then the sink; a backend that can hand nodes over during the
forward overrides it, so a capturing run needs no more memory than a plain one.

A backend that lacks a capability says so with `CapabilityError` (a usage error)
instead of an AttributeError in the middle of a run.

Imports no framework.
"""

from __future__ import annotations

import abc
from typing import Callable, Dict, Iterable, List, NamedTuple, Sequence, Tuple

import numpy as np

from .. import rules
from .. import spec as S

OPTIMIZERS = ("sgd", "momentum")
CAPABILITIES = ("inference", "capture", "gradients", "training")


class BackendUnavailableError(ImportError):
    """A backend's framework is not installed (or fails to import)."""


class UnknownBackendError(ValueError):
    pass


class CapabilityError(ValueError):
    """A backend was asked for something it does not implement (gradients, training)."""


class UnsupportedNodeError(TypeError):
    """A backend has no converter for a node type of the vocabulary."""


class Gradients(NamedTuple):
    """What `gradients` returns: the loss, the logits, d loss / d input
    (channels-first, like the input) and d loss / d parameter for every trainable
    canonical parameter, in the canonical layout (BatchNorm statistics excluded)."""

    loss: float
    logits: np.ndarray
    input: np.ndarray
    params: Dict[str, np.ndarray]


def heavy_ball_momentum(optimizer: str, momentum: float) -> float:
    """The momentum coefficient of `optimizer`: 0 for plain "sgd", `momentum` for
    "momentum" (heavy ball, no dampening, no Nesterov, no weight decay).

    Every backend uses its framework's own optimiser (torch.optim.SGD,
    keras.optimizers.SGD, Gluon's "sgd"). Their heavy-ball formulas agree for a
    constant learning rate lr: PyTorch keeps v <- mu*v + g, w <- w - lr*v;
    Keras and Gluon keep u <- mu*u - lr*g, w <- w + u. Both start from zero, so
    by induction u = -lr*v after every step and the weights are the same."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if optimizer == "sgd":
        return 0.0
    if not 0.0 < momentum < 1.0:
        raise ValueError(f"momentum must be in (0, 1) for the momentum optimiser, got {momentum!r}")
    return float(momentum)


# ------------------------------------------------------------------- converters


class Converters:
    """Node type -> the function that realises it in one backend.

        converters = Converters("torch")

        @converters.register(S.Conv2d)
        def conv(node, info, ...): ...

    `convert(node, *args)` calls the converter of the node's type (UnsupportedNodeError
    naming the backend and the type when there is none); `missing()` lists the
    vocabulary's node types (`rules.NODE_TYPES`) the backend cannot build yet."""

    def __init__(self, backend: str):
        self.backend = backend
        self._table: Dict[type, Callable] = {}

    def register(self, *node_types: type) -> Callable[[Callable], Callable]:
        def decorate(fn: Callable) -> Callable:
            for node_type in node_types:
                if node_type in self._table:
                    raise ValueError(f"{self.backend}: a converter for {node_type.__name__} is registered twice")
                self._table[node_type] = fn
            return fn
        return decorate

    def __contains__(self, node_type: type) -> bool:
        return node_type in self._table

    def convert(self, node: S.Node, *args, **kwargs):
        fn = self._table.get(type(node))
        if fn is None:
            raise UnsupportedNodeError(f"the {self.backend} backend has no converter for "
                                       f"{type(node).__name__} nodes")
        return fn(node, *args, **kwargs)

    def missing(self, node_types: Iterable[type] = rules.NODE_TYPES) -> List[str]:
        return [t.__name__ for t in node_types if t not in self._table]


# -------------------------------------------------------------------- contract


class Backend(abc.ABC):
    """One framework's implementation of the contract (see the module docstring).
    `converters` holds its per-node converters; `capabilities` what it implements
    beyond inference (kept equal to its catalog record by a contract test)."""

    name: str = ""
    converters: Converters
    capabilities: Tuple[str, ...] = ("inference", "capture")
    device: str = "cpu"  # where its models run; see `on`
    tf32: bool = False  # whether TF32 may stand in for float32 on a GPU

    @property
    def label(self) -> str:
        """The name a run keys this backend by: `torch`, or `torch:cuda` off the CPU."""
        return self.name if self.device == "cpu" else f"{self.name}:{self.device}"

    def on(self, device: str, tf32: bool = False) -> "Backend":
        """This backend running its models on `device` (a copy; `self` is unchanged).
        Only the CPU unless a backend says otherwise."""
        if device != "cpu":
            raise CapabilityError(f"the {self.name} backend runs on the CPU only, not {device!r}")
        return self

    def describe_device(self) -> str:
        """Where its models run, in words, for the report."""
        return self.device

    @abc.abstractmethod
    def build(self, model: S.ModelSpec, dtype: str = "float32"): ...

    @abc.abstractmethod
    def get_weights(self, net) -> Dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def set_weights(self, net, weights: Dict[str, np.ndarray]) -> None: ...

    @abc.abstractmethod
    def forward(self, net, x: np.ndarray, capture: Sequence[str] = (),
                train: bool = False) -> Tuple[np.ndarray, Dict[str, np.ndarray]]: ...

    def stream(self, net, x: np.ndarray, capture: Sequence[str], sink: Callable[[str, np.ndarray], None],
               train: bool = False) -> np.ndarray:
        """The output of a forward that hands every node in `capture` to `sink`
        (see the module docstring). This default holds them all first."""
        out, acts = self.forward(net, x, capture, train)
        for path in dict.fromkeys(capture):
            sink(path, acts.pop(path))
        return out

    @abc.abstractmethod
    def count_params(self, net) -> Tuple[int, int]: ...

    @abc.abstractmethod
    def versions(self) -> Dict[str, str]: ...

    def gradients(self, net, x: np.ndarray, labels: np.ndarray, train: bool = False) -> Gradients:
        raise CapabilityError(f"the {self.name} backend does not compute gradients")

    def Trainer(self, net, optimizer: str, lr: float, momentum: float = 0.0):  # noqa: N802 (a factory, as a class)
        raise CapabilityError(f"the {self.name} backend does not train")

    def missing_converters(self) -> List[str]:
        return self.converters.missing()

    def __repr__(self) -> str:
        return f"<refnets backend {self.name!r}>"


class ModuleBackend(Backend):
    """A backend whose functions live in its package's modules: `build_module`
    (build), `weights_module` (get_weights, set_weights, count_params),
    `run_module` (forward), `training_module` (gradients, Trainer) and
    `framework_module` (versions), set as class attributes."""

    build_module = weights_module = run_module = training_module = framework_module = None

    def build(self, model, dtype="float32"):
        return self.build_module.build(model, dtype)

    def get_weights(self, net):
        return self.weights_module.get_weights(net)

    def set_weights(self, net, weights):
        self.weights_module.set_weights(net, weights)

    def forward(self, net, x, capture=(), train=False):
        return self.run_module.forward(net, x, capture, train)

    def stream(self, net, x, capture, sink, train=False):
        """The run module's own `stream` where it has one, else the default."""
        own = getattr(self.run_module, "stream", None)
        if own is None:
            return super().stream(net, x, capture, sink, train)
        return own(net, x, capture, sink, train)

    def gradients(self, net, x, labels, train=False):
        return self.training_module.gradients(net, x, labels, train)

    def Trainer(self, net, optimizer, lr, momentum=0.0):  # noqa: N802
        return self.training_module.Trainer(net, optimizer, lr, momentum)

    def count_params(self, net):
        return self.weights_module.count_params(net)

    def versions(self):
        return self.framework_module.versions()
