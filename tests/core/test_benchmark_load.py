"""`python -m benchmarks` refuses to publish a figure taken under load: the section
is marked in the tables and --update-readme leaves the README alone (exit 1)."""

import json
import time
import types

import pytest

from benchmarks import __main__ as bench
from benchmarks import load


def _fake_section(calls):
    def run(quick, log):
        calls.append(quick)
        return {"figure": 1.0}

    return types.SimpleNamespace(
        run=run,
        verdicts=lambda s: [{"what": "fake figure", "value": s["figure"], "target": "<= 2", "met": True}],
        markdown=lambda s: ["### fake", "", "| figure |", "|---|", f"| {s['figure']} |", ""])


def _record(frac):
    return {"wall_s": 1.0, "others_cpu_s": frac * 2, "others_frac": frac, "loadavg_start": None, "loadavg_end": None}


@pytest.mark.parametrize("others, refused", [(0.5, True), (0.02, False)])
def test_update_readme_refuses_a_section_under_load(others, refused, tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- benchmarks:start -->\nold figures\n<!-- benchmarks:end -->\nrest\n")
    calls = []
    monkeypatch.setattr(bench, "SECTIONS", {"fake": _fake_section(calls)})
    monkeypatch.setattr(bench, "ROOT", str(tmp_path))
    monkeypatch.setattr(load, "probe", lambda seconds=1.0: _record(0.0))
    monkeypatch.setattr(load.Meter, "stop", lambda self: _record(others))
    code = bench.main(["--only", "fake", "--update-readme", "--out", str(tmp_path / "out")])
    assert calls == [False]
    data = json.loads((tmp_path / "out" / "benchmarks.json").read_text())
    assert data["sections"]["fake"]["load"]["under_load"] is refused
    table = (tmp_path / "out" / "benchmarks.md").read_text()
    if refused:
        assert code == 1 and "old figures" in readme.read_text()
        assert "**under load**" in table and data["verdicts"][0]["under_load"]
    else:
        assert code == 0 and "old figures" not in readme.read_text() and "| 1.0 |" in readme.read_text()
        assert "under load" not in table


def test_others_cpu_excludes_our_own(monkeypatch):
    """A machine whose only busy process is this one: others' share is nil."""
    monkeypatch.setattr(load, "machine_busy_s", lambda: 1000.0 + load.own_cpu_s())
    meter = load.Meter()
    end = time.process_time() + 0.2
    while time.process_time() < end:  # our own work is not the machine's load
        pass
    record = meter.stop()
    assert record["others_cpu_s"] < 0.01 and record["others_frac"] < 0.01
    assert load.judge(_record(0.0), _record(0.05), [_record(0.2)])["under_load"]
    assert not load.judge(_record(0.0), _record(0.05), [_record(0.09)])["under_load"]
