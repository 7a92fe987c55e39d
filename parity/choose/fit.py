"""`--fit`: train the same model on real data in every backend and compare the curves.

Every backend starts from the same seeded canonical weights (float32), sees the
same batches in the same order (a permutation per epoch seeded by (seed, epoch))
and uses the same optimiser (its framework's own SGD, or heavy-ball momentum: see
`refnets.backends.base.heavy_ball_momentum`). Dropout runs as identity, as in the
other training modes (each framework draws its own masks). Per epoch: the mean
training loss over the epoch's steps, the test accuracy (inference mode), and
the seconds of the epoch's steps, timed where the model lives (in its worker).

The rounding floor, as in `--train-steps --floor`: the reference backend trains
a second time from the weights nudged by one rounding unit (`parity.training.nudge`)
on the same batches. How far its curves move from the reference's is how far
any two runs of the same arithmetic can drift apart on this problem; the other
backends' drift is reported beside it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import refnets
from refnets import backends as B
from refnets import spec as S
from refnets import workers
from refnets.workers import timing

from ..engine.config import ParityUsageError, canonical_weights
from ..engine.header import Progress, progress_or_quiet
from ..training import nudge
from ..training.common import num_classes_of
from . import machine
from .bench import bench_worker
from .data import DataSet

DTYPE = "float32"
DEFAULT_EPOCHS = 10
DEFAULT_BATCH = 32
# Heavy-ball momentum (the CLI's --momentum, 0.875): plain SGD at 2^-4 leaves the
# sigmoid LeNet at chance on the digits after 10 epochs (measured: 11 % test accuracy);
# that LeNet wants a larger rate (--lr 0.125), the ReLU nets a smaller one.
DEFAULT_OPTIMIZER = "momentum"
DEFAULT_LR = 2.0 ** -6  # mnist_resnet diverges at 2^-4 and 2^-3 with momentum 0.875 (measured)
# Zoo models that want another rate with that optimiser, measured on the digits (README,
# "Training on real data"): the sigmoid LeNet reaches 94.7 % at 2^-4 in 10 epochs, 96.9 %
# at 2^-3; mnist_googlenet, whose He-normal start gives a loss of 6.6, is NaN at 2^-6
# and 2^-7 and reaches 97.2 % at 2^-10.
MODEL_LR = {"lenet": 2.0 ** -3, "mnist_googlenet": 2.0 ** -10}


def default_lr(model) -> float:
    """The --fit learning rate when none is given: the model's own, else DEFAULT_LR."""
    return MODEL_LR.get(model, DEFAULT_LR) if isinstance(model, str) else DEFAULT_LR
CHUNKS = 20  # progress-bar updates (worker requests) per epoch
EVAL_BATCH = 500


@dataclass
class Curves:
    train_loss: List[float] = field(default_factory=list)
    test_accuracy: List[float] = field(default_factory=list)  # fractions
    seconds: List[float] = field(default_factory=list)

    def to_json(self) -> Dict[str, object]:
        return {"train_loss": self.train_loss, "test_accuracy": self.test_accuracy, "seconds": self.seconds,
                "final_test_accuracy": self.test_accuracy[-1] if self.test_accuracy else None}


@dataclass
class FitResult:
    model: str
    data: str
    how: str  # how the images were fitted to the model
    n_train: int
    n_test: int
    epochs: int
    batch: int
    optimizer: str
    lr: float
    momentum: float
    seed: int
    reference: str
    curves: Dict[str, Curves] = field(default_factory=dict)  # backend -> curves
    floor: Curves = field(default_factory=Curves)  # the reference from weights one rounding unit away
    versions: Dict[str, str] = field(default_factory=dict)
    machine: Dict[str, object] = field(default_factory=dict)
    load: Optional[machine.Load] = None
    dropout_removed: tuple = ()

    def gaps(self, curves: Curves) -> Dict[str, float]:
        """The largest |loss - reference loss| and |accuracy - reference accuracy| over the epochs."""
        ref = self.curves[self.reference]
        return {"train_loss": max(abs(a - b) for a, b in zip(curves.train_loss, ref.train_loss)),
                "test_accuracy": max(abs(a - b) for a, b in zip(curves.test_accuracy, ref.test_accuracy))}


class Bar:
    """One progress bar on stderr: redrawn in place on a terminal, one line at the end otherwise."""

    WIDTH = 24

    def __init__(self, label: str, stream=None):
        self.label, self.stream = label, stream or sys.stderr
        self.live = self.stream.isatty()

    def update(self, fraction: float, tail: str = "") -> None:
        if self.live or fraction >= 1.0:
            filled = int(round(self.WIDTH * fraction))
            end = "\n" if fraction >= 1.0 else ""
            print(f"\r[fit] {self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%} {tail}",
                  end=end, file=self.stream, flush=True)


class Learner:
    """One backend's model and optimiser, trained a chunk of steps per request."""

    def __init__(self, impl, spec, weights, optimizer: str, lr: float, momentum: float):
        self.impl = impl
        self.net = impl.build(spec, DTYPE)
        impl.set_weights(self.net, weights)
        self.trainer = impl.Trainer(self.net, optimizer, lr, momentum)

    def train(self, x, labels, batch: int) -> Dict[str, object]:
        if isinstance(self.impl, workers.WorkerBackend):
            handle = self.trainer.handle
            return self.impl.request(handle, "train_batches", {"x": x, "labels": labels}, trainer=handle.ident,
                                     batch=batch)[0]
        return timing.train_batches(self.trainer, x, labels, batch)

    def epoch(self, x, labels, batch: int, bar: Optional[Bar]):
        """(mean training loss, seconds) of one pass over x, labels."""
        steps = math.ceil(len(x) / batch)
        per_chunk = max(1, math.ceil(steps / CHUNKS)) * batch
        total = seconds = 0.0
        for begin in range(0, len(x), per_chunk):
            got = self.train(x[begin:begin + per_chunk], labels[begin:begin + per_chunk], batch)
            sizes = [min(batch, len(x) - begin - i * batch) for i in range(len(got["losses"]))]
            total += float(np.dot(got["losses"], sizes))
            seconds += got["seconds"]
            done = min(len(x), begin + per_chunk)
            if bar and done < len(x):  # the caller draws the full bar, with the epoch's figures
                bar.update(done / len(x), f"loss {total / done:.4f}")
        return total / len(x), seconds

    def accuracy(self, x, labels) -> float:
        right = 0
        for begin in range(0, len(x), EVAL_BATCH):
            out, _ = self.impl.forward(self.net, x[begin:begin + EVAL_BATCH])
            right += int(np.sum(np.argmax(out, axis=1) == labels[begin:begin + EVAL_BATCH]))
        return right / len(x)


def run_fit(model: S.ModelSpec, data: DataSet, backends: Sequence[str], epochs: int = DEFAULT_EPOCHS,
            batch: int = DEFAULT_BATCH, optimizer: str = DEFAULT_OPTIMIZER, lr: float = DEFAULT_LR, momentum: float = 0.875,
            seed: int = 0, weights=None, threads: int = 1, progress: Optional[Progress] = None,
            bars: bool = True) -> FitResult:
    """Trains `model` on `data` in each backend (the first is the reference) for `epochs`.
    A backend that runs in a worker (the CLI's default) gets a fresh one with
    `threads` threads (see `bench.thread_env`); one in this process runs as it is."""
    say = progress_or_quiet(progress)
    if epochs < 1 or batch < 1:
        raise ParityUsageError(f"--epochs and --batch must be at least 1, got {epochs} and {batch}")
    momentum = B.heavy_ball_momentum(optimizer, momentum)
    spec, dropped = S.without_dropout(model)
    classes = num_classes_of(spec, refnets.infer(spec))
    if classes < data.num_classes:
        raise ParityUsageError(f"{spec.name} has {classes} outputs, {data.name} has {data.num_classes} classes: "
                               f"add --option num_classes={data.num_classes}")
    canonical = canonical_weights(spec, weights, seed, DTYPE)
    result = FitResult(spec.name, data.name, data.how, len(data.x_train), len(data.x_test), epochs, batch, optimizer,
                       float(lr), momentum, seed, backends[0], machine=machine.describe(), dropout_removed=dropped)
    impls = {label: fresh_worker(label, threads) or B.get(label) for label in backends}
    try:
        for impl in impls.values():
            if isinstance(impl, workers.WorkerBackend):
                impl.start()  # all at once: their frameworks import side by side
        return train_all(result, spec, data, impls, canonical, say, bars and progress is not None)
    finally:
        for impl in impls.values():
            if isinstance(impl, workers.WorkerBackend):
                impl.close()


def fresh_worker(label: str, threads: int) -> Optional[workers.WorkerBackend]:
    """A fresh worker with `threads` threads when `label` is to run in a worker, else None."""
    if workers.config.worker_python(B.parse_label(label)[0]) is None:
        return None
    return bench_worker(label, threads)


def train_all(result: FitResult, spec, data: DataSet, impls, canonical, say, bars: bool) -> FitResult:
    backends, epochs, batch, seed = list(impls), result.epochs, result.batch, result.seed
    learners = {}
    for label, impl in impls.items():
        say(f"importing {label} and building {spec.name}")
        result.versions.update(impl.versions())
        learners[label] = Learner(impl, spec, canonical, result.optimizer, result.lr, result.momentum)
        result.curves[label] = Curves()
    floor = Learner(impls[backends[0]], spec, nudge(canonical, seed), result.optimizer, result.lr, result.momentum)
    meter = machine.LoadMeter()
    meter.start(workers_cpu(learners.values()))
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng((seed, epoch)).permutation(len(data.x_train))
        x, labels = data.x_train[order], data.y_train[order]
        runs = [(label, learners[label], result.curves[label]) for label in backends]
        for label, learner, curves in runs + [(f"{backends[0]} floor", floor, result.floor)]:
            bar = Bar(f"{label:<14} epoch {epoch}/{epochs}") if bars else None
            loss, seconds = learner.epoch(x, labels, batch, bar)
            curves.train_loss.append(loss)
            curves.seconds.append(seconds)
            curves.test_accuracy.append(learner.accuracy(data.x_test, data.y_test))
            if bar:
                bar.update(1.0, f"loss {loss:.4f}  test accuracy {curves.test_accuracy[-1]:.2%}  {seconds:.1f} s")
    result.load = meter.stop(workers_cpu(learners.values()))
    return result


def workers_cpu(learners) -> float:
    """CPU seconds used so far by the worker processes of `learners` (the machine's
    load counts everything else; this process's own time is counted apart)."""
    impls = {id(l.impl): l.impl for l in learners if isinstance(l.impl, workers.WorkerBackend)}
    return sum(impl.request(None, "resources")[0]["cpu_seconds"] for impl in impls.values())
