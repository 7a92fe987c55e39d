"""--fit for one epoch on a slice of the digits in every installed framework, and
--bench on lenet with 2 repeats (the report's fields, not its timings)."""

import json

import pytest

from parity import cli
from refnets import backends

FRAMEWORKS = [b for b in ("torch", "mxnet", "keras") if b in backends.installed()]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    blob = path.read_bytes()
    assert blob[:8] == PNG_SIGNATURE
    import matplotlib.image

    assert matplotlib.image.imread(str(path)).shape[:2][0] > 100


@pytest.mark.skipif(len(FRAMEWORKS) < 2, reason="--fit compares at least two frameworks")
def test_fit_one_epoch_on_digits_learns_in_every_backend(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # in-process torch: the shared test machine is busy
    out_json, out_png = tmp_path / "fit.json", tmp_path / "fit.png"
    code = cli.main(["mnist_resnet", "--fit", "--backends", ",".join(FRAMEWORKS), "--epochs", "1", "--limit", "480",
                     "--batch", "16", "--json", str(out_json), "--plot", str(out_png), "--quiet"])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert set(report["backends"]) == set(FRAMEWORKS) and report["n_train"] == 480 and report["batch"] == 16
    for name, curves in report["backends"].items():
        assert len(curves["train_loss"]) == len(curves["test_accuracy"]) == len(curves["seconds"]) == 1
        assert curves["final_test_accuracy"] > 0.2, name  # chance is 0.1; torch measured 0.48
    assert len(report["floor"]["train_loss"]) == 1
    assert_png(out_png)
    text = capsys.readouterr().out
    assert "final test acc" in text and f"{FRAMEWORKS[0]} floor" in text


def test_bench_lenet_two_repeats_reports_every_figure(tmp_path, capsys):
    chosen = ["numpy"] + FRAMEWORKS[:1]
    out_json = tmp_path / "bench.json"
    code = cli.main(["lenet", "--bench", "--backends", ",".join(chosen), "--batch", "1,2", "--train", "--repeats", "2",
                     "--threads", "1", "--json", str(out_json), "--quiet"])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert report["threads"] == 1 and report["batches"] == [1, 2] and report["machine"]["cores"] >= 1
    for name in chosen:
        run = report["backends"][name]
        assert run["import_seconds"] > 0 and len(run["build_seconds"]) == 2
        assert set(run["forward_seconds"]) == set(run["step_seconds"]) == {"1", "2"}
        assert all(len(v) == 2 for v in run["forward_seconds"].values())
        assert run["peak_rss_bytes"] > 10 * 2 ** 20
        assert set(run["load"]) >= {"loadavg_before", "loadavg_after", "others_cores", "under_load"}
    for figure in ("import", "build", "forward, batch 2", "throughput, batch 1", "train step, batch 2", "peak memory"):
        ratios = [cell["ratio_to_best"] for cell in report["figures"][figure].values()]
        assert min(ratios) == 1.0 and len(ratios) == len(chosen), figure
    text = capsys.readouterr().out
    assert "x1.00" in text and "load (others' CPU)" in text and "versions:" in text


def test_choose_flags_outside_their_modes_exit_2(capsys):
    for argv, message in ((["lenet", "--batch", "1,16"], "only with --bench"),
                          (["lenet", "--plot", "x.png"], "only with --bench or --fit"),
                          (["lenet", "--fit", "--grad"], "--grad does not apply to --fit"),
                          (["lenet", "--fit", "--batch", "4,8"], "one batch size"),
                          (["lenet", "--bench", "--json", "/no/such/dir/b.json"], "--json"),
                          (["lenet", "--fit", "--plot", "curves.svg"], "--plot"),
                          (["lenet", "--fit", "--lr", "0"], "--lr must be > 0")):
        assert cli.main(argv + ["--quiet"]) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_fit_takes_the_models_measured_rate_unless_given():
    from parity.choose import fit

    assert fit.default_lr("lenet") == fit.MODEL_LR["lenet"] != fit.DEFAULT_LR
    assert fit.default_lr("resnet18") == fit.DEFAULT_LR
    assert fit.default_lr("lenet.json") == fit.DEFAULT_LR  # a spec file is not the zoo's lenet


def test_a_batch_size_below_one_is_one_line_with_bench_too(capsys):
    from parity.cli import main

    assert main(["lenet", "--bench", "--batch", "1,0", "--backends", "numpy,torch"]) == 2
    err = capsys.readouterr().err
    assert "--batch must be at least 1, got 1,0" in err and len(err.strip().splitlines()) == 1
