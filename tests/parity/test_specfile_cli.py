"""A spec file through both command lines: export, summary of the file, parity on
the file with two backends; a bad file is a usage error naming its JSON path."""

import json
import re
import subprocess
import sys

import pytest
from refnets import registry, specfile
from refnets.__main__ import main as refnets_main

from parity.cli import main as parity_main
from conftest import INSTALLED


def _export(tmp_path, capsys, *extra, name="lenet"):
    out = tmp_path / f"{name}.json"
    assert refnets_main(["export", name, "--out", str(out), *extra]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out} ({out.stat().st_size:,} bytes)" in said
    return out


def test_export_then_summary_of_the_file(tmp_path, capsys):
    path = _export(tmp_path, capsys, "--option", "num_classes=5")
    assert specfile.load(path) == registry.get_spec("lenet", num_classes=5)
    assert refnets_main(["summary", str(path)]) == 0
    from_file = capsys.readouterr().out
    assert refnets_main(["summary", "lenet", "--option", "num_classes=5"]) == 0
    assert from_file == capsys.readouterr().out
    assert "fc3      Dense       5" in from_file
    assert "Total params: 61,281\nTrainable params: 61,281\nNon-trainable params: 0" in from_file


def test_export_with_an_input_shape_records_it(tmp_path, capsys):
    path = _export(tmp_path, capsys, "--input-shape", "1,32,32")
    assert json.loads(path.read_text())["input_shape"] == [1, 32, 32]
    assert specfile.load(path).input_shape == (1, 32, 32)


@pytest.mark.parametrize("argv,message", [
    (["summary", "FILE", "--option", "num_classes=3"], r"options \(num_classes\) apply to zoo models"),
    (["summary", "FILE", "--input-shape", "3,28,28"], r"has 3 channels but the model in the file takes 1"),
    (["summary", "FILE", "--input-shape", "1,4,4"], r"input too small: node 'conv2'"),
    (["export", "lenet", "--out", "lenet.txt"], r"a spec file's name ends in \.json"),
    (["summary", "missing.json"], r"missing\.json: cannot read the spec file"),
])
def test_refnets_usage_errors_exit_2(tmp_path, capsys, argv, message):
    path = _export(tmp_path, capsys)
    assert refnets_main([str(path) if a == "FILE" else a for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err


def _bad_file(tmp_path):
    obj = specfile.to_json(registry.get_spec("lenet"))
    obj["root"]["children"][3]["kernel"] = "x"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj, indent=2))
    return path


def test_summary_of_a_bad_file_names_its_json_path(tmp_path, capsys):
    assert refnets_main(["summary", str(_bad_file(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "bad.json: $.root.children[3].kernel: 'x' is not of type 'array'" in err


@pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")
def test_parity_on_an_exported_file_agrees_and_matches_the_zoo_run(tmp_path, capsys):
    path = _export(tmp_path, capsys)
    report = tmp_path / "file.json"
    assert parity_main([str(path), "--backends", "torch,numpy", "--quiet", "--json", str(report)]) == 0
    assert "ALL AGREE" in capsys.readouterr().out
    zoo_report = tmp_path / "zoo.json"
    assert parity_main(["lenet", "--backends", "torch,numpy", "--quiet", "--json", str(zoo_report)]) == 0
    capsys.readouterr()
    # the same seeded weights and input: the figures are the same as the zoo model's
    from_file, from_zoo = json.loads(report.read_text()), json.loads(zoo_report.read_text())
    assert from_file["comparisons"] == from_zoo["comparisons"]


def test_parity_on_a_bad_file_exits_2_with_its_json_path(tmp_path):
    path = _bad_file(tmp_path)
    result = subprocess.run([sys.executable, "-m", "parity", str(path), "--backends", "numpy,torch"],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {path}: $.root.children[3].kernel: 'x' is not of type 'array'"
    assert "Traceback" not in result.stderr
