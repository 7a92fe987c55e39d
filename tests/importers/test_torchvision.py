"""`python -m parity MODEL --against torchvision` for every torchvision model we list,
in float32 and float64, through the CLI (its JSON report read back).

Small inputs: every listed torchvision model has an adaptive average pool before its
classifier, so 32x32 (AlexNet: 63x63, the smallest its stem and three max pools take)
runs the same layers as 224x224; the VGGs still hold their 120M-parameter classifier.
Each model runs against one backend, spread over torch, keras and mxnet (the first
installed one where its own is missing), batch 1. Skipped where torchvision is not
installed (the CPU torch 2.13.0 wheel has none).
"""

import importlib.util
import json

import pytest
from parity.cli import main
from refnets import zoo_import as Z

from conftest import DEEPER_ONLY, INSTALLED, TOLERANCE

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
needs_torchvision = pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision is not installed")

ENTRIES = Z.ZOOS["torchvision"]
SPREAD = ("torch", "keras", "mxnet")


def small_input(native):
    return (3, 63, 63) if native == "alexnet" else (3, 32, 32)


def backend_for(index):
    """The backend a model runs against: spread over the three, the first installed
    one where that one is missing (None: no backend at all)."""
    preferred = SPREAD[index % len(SPREAD)]
    if preferred in INSTALLED:
        return preferred
    return next((b for b in SPREAD if b in INSTALLED), None)


def cases():
    return [pytest.param(entry.native, backend_for(i), dtype, id=f"{entry.native}-{dtype}",
                         marks=[pytest.mark.slow] if entry.native in DEEPER_ONLY else [])
            for i, entry in enumerate(ENTRIES) for dtype in ("float32", "float64")]


def run_cli(native, backend, dtype, tmp_path):
    path = tmp_path / "report.json"
    shape = ",".join(map(str, small_input(native)))
    code = main([native, "--against", "torchvision", "--backends", backend, "--batch", "1", "--input-shape",
                 shape, "--dtype", dtype, "--quiet", "--json", str(path)])
    return code, json.loads(path.read_text())


@needs_torchvision
@pytest.mark.parametrize("native,backend,dtype", cases())
def test_torchvision_model_conforms(native, backend, dtype, tmp_path, capsys):
    if backend is None:
        pytest.skip("no framework backend is installed")
    code, report = run_cli(native, backend, dtype, tmp_path)
    text = capsys.readouterr().out
    assert code == 0, text
    assert report["zoo_model"] == native and report["reference"] == "torchvision" and report["dtype"] == dtype
    assert report["input_shape"] == list(small_input(native))
    comparison = report["comparisons"][backend]
    assert comparison["finite"] and comparison["max_rel"] <= TOLERANCE[dtype], comparison
    # the zoo model's own parameter counts (GoogLeNet's auxiliary heads aside: off
    # in a model built without pretrained weights) equal our model's in the backend
    assert report["param_counts"][backend] == report["param_counts"]["torchvision"]
    assert report["versions"]["torchvision"]


def test_every_listed_torchvision_model_is_tested():
    """The parametrisation above follows the zoo list: a model added to the list is
    tested without touching this file, in both precisions."""
    natives = [case.values[0] for case in cases()]
    assert sorted(set(natives)) == sorted(e.native for e in ENTRIES) and len(natives) == 2 * len(ENTRIES)
    assert {"alexnet", "vgg19_bn", "resnet152", "googlenet", "densenet121"} <= set(natives)


def test_spread_falls_back_to_an_installed_backend():
    chosen = {backend_for(i) for i in range(len(ENTRIES))}
    if INSTALLED:
        assert chosen <= set(INSTALLED) and None not in chosen
    else:
        assert chosen == {None}
