"""The figures of `--bench` (bars) and `--fit` (curves), as PNG bytes.

matplotlib (the `[plot]` extra) is imported here, lazily, with the Agg backend:
no display is needed, and `python -m parity --help` imports none of it.
"""

from __future__ import annotations

import io

from ..engine.config import ParityUsageError
from .bench import BenchResult
from .fit import FitResult
from .report import bench_rows


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ParityUsageError("--plot needs matplotlib: pip install 'refnets[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    pyplot().close(figure)
    return buffer.getvalue()


def bench_png(result: BenchResult) -> bytes:
    """One bar panel per figure (import, build, forward and throughput per batch
    size, training step, peak memory), a bar per backend."""
    plt = pyplot()
    rows = bench_rows(result)
    columns = 3
    lines = -(-len(rows) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4 * columns, 2.8 * lines), squeeze=False)
    names = list(result.backends)
    for axis, (title, unit, higher, cells) in zip(axes.flat, rows):
        shown = [b for b in names if b in cells]
        values = [cells[b][0] for b in shown]
        axis.bar(shown, values, color=[f"C{names.index(b)}" for b in shown])
        axis.set_title(f"{title} ({'higher' if higher else 'lower'} is better)", fontsize=9)
        axis.set_ylabel(unit, fontsize=8)
        axis.tick_params(labelsize=8)
    for axis in list(axes.flat)[len(rows):]:
        axis.axis("off")
    busy = [b for b, r in result.backends.items() if r.load.under_load]
    figure.suptitle(f"{result.model}, {result.dtype}, {result.threads} thread(s), median of {result.repeats}"
                    + (f"; under load: {', '.join(busy)}" if busy else ""), fontsize=10)
    figure.tight_layout()
    return png(figure)


def fit_png(result: FitResult) -> bytes:
    """Training loss and test accuracy per epoch, a line per backend (the floor run dashed)."""
    plt = pyplot()
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = list(range(1, result.epochs + 1))
    series = list(result.curves.items()) + [(f"{result.reference} floor", result.floor)]
    for i, (name, curves) in enumerate(series):
        style = dict(linestyle="--", color="grey") if name.endswith(" floor") else dict(marker="o", color=f"C{i}")
        loss_axis.plot(epochs, curves.train_loss, label=name, markersize=3, **style)
        acc_axis.plot(epochs, [100 * a for a in curves.test_accuracy], label=name, markersize=3, **style)
    loss_axis.set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss (mean over the epoch)")
    acc_axis.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"{result.model} on {result.data}: {result.n_train} train / {result.n_test} test, batch "
                    f"{result.batch}, {result.optimizer} lr {result.lr:g}", fontsize=10)
    figure.tight_layout()
    return png(figure)
