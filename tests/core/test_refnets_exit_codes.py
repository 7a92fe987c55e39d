"""Exit codes of `python -m refnets` (see refnets.exits): 2 for a bad input, 3 for
a bug (one line, --debug shows the traceback), 130 on Ctrl-C; --out checked
before any work and written atomically."""

import os

import pytest

import refnets.__main__ as refnets_cli


def refnets(capsys, *argv):
    code = refnets_cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("argv, message", [
    (["summary", "nosuch"], "unknown model 'nosuch'"),
    (["summary", "lenet", "--input-shape", "1,4,4"], "input too small"),
    (["export", "lenet", "--out", "/nonexistent-dir/m.json"], "the directory /nonexistent-dir does not exist"),
    (["export", "lenet", "--out", "m.txt"], "a spec file's name ends in .json"),
    (["code", "lenet", "--framework", "torch", "--out", "/nonexistent-dir/m.py"], "does not exist"),
    (["trace", "x.py:build", "--from", "torch", "--out", "/nonexistent-dir/m.json"], "does not exist"),
])
def test_bad_input_exits_2_with_one_message(capsys, argv, message):
    code, err = refnets(capsys, *argv)
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_an_internal_error_exits_3_in_one_line(capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise AttributeError("oops")

    monkeypatch.setattr(refnets_cli, "summary", bug)
    code, err = refnets(capsys, "summary", "lenet")
    assert code == 3 and err.count("\n") == 1
    assert "a bug in refnets" in err and "AttributeError: oops" in err and "--debug" in err
    code, err = refnets(capsys, "--debug", "summary", "lenet")
    assert code == 3 and "Traceback" in err


def test_ctrl_c_exits_130_and_leaves_no_partial_file(capsys, monkeypatch, tmp_path):
    import refnets.fileio as fileio

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "fsync", interrupted)
    code, err = refnets(capsys, "export", "lenet", "--out", str(tmp_path / "m.json"))
    assert code == 130 and "interrupted" in err
    assert os.listdir(tmp_path) == []


def test_code_out_is_written_whole(capsys, tmp_path):
    out = tmp_path / "lenet.py"
    assert refnets(capsys, "code", "lenet", "--framework", "torch", "--out", str(out))[0] == 0
    assert "class" in out.read_text() and os.listdir(tmp_path) == ["lenet.py"]
