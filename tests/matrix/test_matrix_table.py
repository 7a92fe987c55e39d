"""The matrix's table, summary, exit code and worst-error extraction, on records
made by hand (no process, no framework)."""

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

from parity.engine.metrics import Comparison
from parity.matrix import cells, engines, table


def record(model, dtype, mode, outcome, max_rel=1e-7, backend="keras"):
    cell = cells.make_cell(model, dtype, mode, ["torch", backend], 2, 0, None, None, {})
    if outcome == "failed":
        return cells.failed_record(cell, "BackendFailure: the keras worker was killed by SIGKILL\nstderr ...")
    return {**cells.failed_record(cell, ""), "outcome": outcome, "exit_code": int(outcome == "disagree"),
            "error": None, "worst": {"backend": backend, "what": "output", "max_rel": max_rel, "max_abs": 1.0}}


def test_markdown_rows_are_models_and_columns_dtype_then_mode():
    records = [record("lenet", "float64", "grad", "agree", 2e-15), record("lenet", "float32", "forward", "agree"),
               record("nin", "float32", "forward", "disagree", 0.03), record("nin", "float64", "grad", "failed"),
               record("lenet", "float64", "train", "agree", None)]
    text = table.markdown(records, skipped=1, wall=12.34)
    lines = text.splitlines()
    assert lines[0] == "| model | float32 forward | float64 grad | float64 train |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| lenet | agree 1.0e-07 | agree 2.0e-15 | agree inf/NaN |"
    assert lines[3] == "| nin | **DISAGREE** 3.0e-02 (keras) | FAILED | - |"
    assert "- nin-float64-grad: BackendFailure: the keras worker was killed by SIGKILL" in lines
    assert lines[-1] == "matrix: 5 cells (1 done before, skipped): 3 agree, 1 disagree, 1 failed; 12.3 s"


def test_exit_code_failed_beats_disagree_beats_agree():
    agree, disagree, failed = (record("lenet", "float32", "forward", o) for o in ("agree", "disagree", "failed"))
    assert table.exit_code([agree]) == 0
    assert table.exit_code([agree, disagree]) == 1
    assert table.exit_code([disagree, failed]) == 2


def test_document_holds_every_cell_and_the_counts():
    records = [record("lenet", "float32", "forward", "agree"), record("lenet", "float64", "forward", "disagree")]
    doc = table.document(records, {"engine": "pool 2"}, skipped=0, wall=1.0)
    assert doc["summary"] == {"agree": 1, "disagree": 1, "failed": 0, "cells": 2, "skipped": 0, "wall_seconds": 1.0,
                              "exit_code": 1}
    assert doc["cells"] == records and doc["settings"] == {"engine": "pool 2"}


def comparison(max_rel):
    return Comparison(max_rel, max_rel, 0.0, 1.0, max_rel == max_rel, None, max_rel < 1e-3)


def test_worst_error_is_the_largest_over_backends_and_quantities_nan_worst():
    class R:  # the fields worst_training reads from a TrainingBackendResult
        def __init__(self, loss, grads):
            self.loss, self.outputs, self.input_grad = comparison(loss), None, comparison(0.0)
            self.params = [cells_param(name, value) for name, value in grads.items()]

    def cells_param(name, value):
        from parity.training import ParamComparison
        return ParamComparison(name, "gradient", comparison(value))

    class Result:
        results = {"mxnet": R(1e-9, {"conv1.weight": 1e-12}), "keras": R(1e-15, {"fc.bias": 5e-8})}

    worst = cells.worst_training(Result())
    assert worst == {"backend": "keras", "what": "gradient fc.bias", "max_rel": 5e-8, "max_abs": 5e-8}
    Result.results["mxnet"].params.append(cells_param("fc.weight", float("nan")))
    assert cells.worst_training(Result())["what"] == "gradient fc.weight"


def test_settings_hash_ignores_where_a_cell_runs_but_not_what_it_computes():
    base = dict(model="lenet", dtype="float64", mode="forward", backends=["numpy", "torch"], batch=2, seed=0,
                input_shape=None)
    plain = cells.make_cell(**base, worker_mode=None, pythons={})
    assert cells.make_cell(**base, worker_mode="workers", pythons={"torch": "/p"})["settings_hash"] == \
        plain["settings_hash"]
    for change in (dict(batch=4), dict(backends=["numpy", "keras"]), dict(input_shape=(1, 32, 32))):
        assert cells.make_cell(**{**base, **change}, worker_mode=None, pythons={})["settings_hash"] != \
            plain["settings_hash"]


def test_a_dead_pool_process_fails_its_cell():
    cell = cells.make_cell("lenet", "float64", "forward", ["numpy", "torch"], 2, 0, None, None, {})
    future = Future()
    future.set_exception(BrokenProcessPool("a process terminated abruptly"))
    failed = engines.pool_record(future, cell)
    assert failed["outcome"] == "failed" and "pool process died" in failed["error"]


def test_a_crashed_ray_task_fails_its_cell():
    class RayError(Exception):
        pass

    class FakeRay:  # the two names ray_record uses
        class exceptions:
            pass

        @staticmethod
        def get(ref):
            raise RayError("The worker died unexpectedly while executing this task.\n(details)")

    FakeRay.exceptions.RayError = RayError
    cell = cells.make_cell("lenet", "float64", "forward", ["numpy", "torch"], 2, 0, None, None, {})
    failed = engines.ray_record(FakeRay, "ref", cell)
    assert failed["outcome"] == "failed"
    assert failed["error"] == "its Ray task failed: RayError: The worker died unexpectedly while executing this task."
