"""Packaging: extras with lower bounds only (exact versions live in CI's constraints
files), and the keras backend counted as installed only where TensorFlow is."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
tomllib = pytest.importorskip("tomllib")


def extras():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)["project"]["optional-dependencies"]


def constraints(name):
    with open(os.path.join(ROOT, "ci", f"constraints-{name}.txt")) as handle:
        lines = [line.split("#")[0].strip() for line in handle]
    return dict(line.split("==", 1) for line in lines if line)


def test_extras_carry_lower_bounds_only():
    for extra, requirements in extras().items():
        for requirement in requirements:
            if requirement.startswith("refnets["):
                continue
            if requirement.startswith("mxnet") or requirement.startswith("numpy"):  # MXNet's last release
                assert requirement in ("mxnet==1.9.1", "numpy<1.24"), (extra, requirement)
                continue
            assert re.fullmatch(r"[a-z-]+>=[0-9.]+", requirement), (extra, requirement)


def test_no_extra_names_a_tensorflow_build_behind_the_users_back():
    """[keras] goes onto any TensorFlow build; only the extras named after a build
    (and [all], the CPU one-environment install) bring one."""
    found = extras()
    assert found["keras"] == [r for r in found["keras"] if r.startswith("keras")]
    assert any(r.startswith("tensorflow>=") for r in found["tensorflow"])
    assert any(r.startswith("tensorflow-cpu>=") for r in found["tensorflow-cpu"])
    named = {extra for extra, reqs in found.items() if any(r.startswith("tensorflow") for r in reqs)}
    assert named == {"tensorflow", "tensorflow-cpu"}


@pytest.mark.parametrize("env,needed", [
    ("legacy", {"numpy": "1.23.5", "mxnet": "1.9.1", "torch": "2.13.0", "tensorflow-cpu": "2.17.*"}),
    ("modern", {"torch": "2.14.1", "torchvision": "0.29.1"}),
])
def test_constraints_pin_the_ci_environments(env, needed):
    pins = constraints(env)
    assert {k: pins.get(k) for k in needed} == needed
    if env == "modern":
        assert int(pins["numpy"].split(".")[0]) >= 2 and "mxnet" not in pins
    lower = {r.split(">=")[0]: r.split(">=")[1] for reqs in extras().values() for r in reqs if ">=" in r}
    for name, bound in lower.items():  # every CI pin satisfies the extras' lower bounds
        if name in pins:
            as_tuple = lambda v: tuple(int(p) for p in v.replace(".*", "").split("."))  # noqa: E731
            assert as_tuple(pins[name]) >= as_tuple(bound), (env, name)


def test_keras_backend_needs_tensorflow_not_just_keras():
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from refnets import backends; from refnets.backends import catalog\n"
            "print('keras' in backends.installed(), catalog.BACKENDS['keras'].install)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("False ") and "refnets[tensorflow]" in result.stdout
