"""Where a torch model runs: the device, and whether TF32 may stand in for float32.

TF32 (on Ampere and newer GPUs) keeps 10 mantissa bits in convolutions and matrix
products: it puts float32 outputs around 1e-3 of max|ref| away from float64, far
outside the float32 bar (1e-5). PyTorch allows it in cuDNN convolutions by default;
refnets turns it off unless asked (`tf32=True`), and sets both flags around every
forward, gradient and training step, because they are process-wide."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict

import torch

from ..base import BackendUnavailableError

DEVICES = ("cpu", "cuda")


def check_device(device: str) -> torch.device:
    """The torch device for `device` ("cpu", "cuda", "cuda:N"); BackendUnavailableError
    when CUDA is asked for and this torch cannot use it."""
    kind = device.split(":", 1)[0]
    if kind not in DEVICES:
        raise BackendUnavailableError(f"the torch backend runs on {' or '.join(DEVICES)}, not {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise BackendUnavailableError(f"torch {torch.__version__} ({build}) sees no CUDA device; "
                                      f"run on the CPU (drop --device cuda / the ':cuda' label)")
    return torch.device(device)


def describe(device: torch.device, tf32: bool) -> str:
    """The device in words for the report: the GPU's name and whether TF32 was allowed."""
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device)
    return f"{device} ({name}, CUDA {torch.version.cuda}, TF32 {'on' if tf32 else 'off'})"


@contextmanager
def precision(model):
    """Sets PyTorch's process-wide TF32 flags to the model's setting for the block."""
    if getattr(model, "refnets_device", torch.device("cpu")).type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = model.refnets_tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def place(net, device: torch.device, tf32: bool):
    """Moves a built model to `device` and records where it runs."""
    net.to(device)
    net.refnets_device, net.refnets_tf32 = device, tf32
    return net


def versions(device: torch.device) -> Dict[str, str]:
    if device.type != "cuda":
        return {}
    return {"cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version())}
