"""The shrinker on an injected fault: torch made wrong on tanh activations. A large
random case must shrink to a tiny spec that still disagrees, and the reproducer
files must be written and, run again, give the same verdict."""

import json
import os
import re
import runpy

import pytest
from refnets import spec as S

from conftest import INSTALLED
from parity.fuzz import generate as G
from parity.fuzz import repro, run
from parity.fuzz.campaign import Campaign
from parity.fuzz.shrink import shrink

pytestmark = pytest.mark.skipif("torch" not in INSTALLED, reason="torch is not installed")

# Case 5 of seed 0: 21 nodes (Parallel blocks, BatchNorms, convs) with one tanh.
SEED, INDEX = 0, 5


@pytest.fixture
def wrong_tanh(monkeypatch):
    """The torch backend builds every tanh activation as a hard tanh (a clip to [-1, 1])."""
    from refnets.backends.torch import build
    from torch import nn

    monkeypatch.setitem(build.ACTIVATIONS, "tanh", nn.Hardtanh)


def _leaves(model):
    return [node for _, node in model.walk() if not isinstance(node, S.CONTAINERS)]


def _problem():
    case = G.case(SEED, INDEX)
    return run.Problem(case.model, case.batch, case.weight_seed, case.input_seed)


def test_the_injected_fault_shrinks_to_a_tiny_spec_that_still_disagrees(wrong_tanh):
    problem = _problem()
    assert len(_leaves(problem.model)) > 15
    failure = run.evaluate(problem, "torch", "float64")
    assert failure.status == run.DISAGREE

    shrunk = shrink(problem, lambda p: run.evaluate(p, "torch", "float64"), failure)
    leaves = _leaves(shrunk.model)
    assert len(leaves) <= 2, leaves
    assert any(isinstance(n, S.Activation) and n.kind == "tanh" for n in leaves)
    assert shrunk.batch == 1
    assert run.evaluate(shrunk, "torch", "float64").status == run.DISAGREE


def test_the_campaign_saves_a_reproducer_that_reruns_to_the_same_verdict(wrong_tanh, tmp_path):
    problem = _problem()
    failure = run.evaluate(problem, "torch", "float32")
    campaign = Campaign(SEED, 1, ["torch"], ["float32"], str(tmp_path))
    finding = campaign.investigate("seed 0 case 5", problem, failure)
    assert not finding.explained and finding.reproduced
    directory = finding.directory
    for name in ("spec.json", "weights.safetensors", "input.npy", "reference.npy", "output-torch.npy",
                 "verdict.json", "repro_torch.py"):
        assert os.path.isfile(os.path.join(directory, name)), name
    with open(os.path.join(directory, "verdict.json")) as f:
        record = json.load(f)
    assert record["class"] == "unexplained" and record["backend"] == "torch" and record["dtype"] == "float32"
    assert repro.rerun(directory).status == run.DISAGREE
    # The standalone script is torch alone (its tanh is torch's own), so it agrees with numpy:
    # the fault lives in the patched backend, not in the framework.
    source = open(os.path.join(directory, "repro_torch.py")).read()
    assert not re.search(r"^\s*(import|from)\s+(refnets|parity)\b", source, re.M)
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(os.path.join(directory, "repro_torch.py"), run_name="__main__")
    assert stop.value.code == 0


def test_a_failing_reference_is_an_error_verdict_not_a_crash(monkeypatch):
    def broken(problem, dtype):
        raise FloatingPointError("overflow")

    monkeypatch.setattr(run, "reference", broken)
    verdicts = run.run_problem(_problem(), ["torch"], ["float64"])
    assert [(v.status, v.detail.split(":")[0]) for v in verdicts] == [(run.ERROR, "FloatingPointError")]
    assert run.evaluate(_problem(), "torch", "float32").status == run.ERROR
