"""parity.outputs: output paths refused before any work, files written atomically."""

import os

import pytest

from parity.outputs import ParityUsageError, check_output_path, write_atomic


def test_missing_directory_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(ParityUsageError, match=r"--json .*does not exist"):
        check_output_path(str(tmp_path / "nope" / "r.json"), "--json")


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(ParityUsageError, match="is a directory"):
        check_output_path(str(tmp_path), "--json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ParityUsageError, match="not writable"):
            check_output_path(str(locked / "r.json"), "--json")
    finally:
        locked.chmod(0o700)


def test_suffixes_and_none(tmp_path):
    assert check_output_path(None, "--json") is None
    with pytest.raises(ParityUsageError, match=r"must end in \.safetensors or \.npz"):
        check_output_path(str(tmp_path / "w.bin"), "--save-weights", (".safetensors", ".npz"))
    assert check_output_path(str(tmp_path / "w.npz"), "--save-weights", (".safetensors", ".npz"))


def test_write_atomic_writes_text_and_bytes_and_leaves_no_temporary(tmp_path):
    write_atomic(str(tmp_path / "a.json"), "{}")
    write_atomic(str(tmp_path / "b.bin"), b"\x00\x01")
    assert (tmp_path / "a.json").read_text() == "{}"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.bin"]


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text("old")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(str(target), "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]
