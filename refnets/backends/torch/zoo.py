"""torchvision adapter (an optional extra: torchvision is imported only to build a
zoo model; a state_dict is read without it, `zoo_import.state_dict`).

torchvision's modules are registered in the order they run (conv1, bn1,
layer1.0.conv1, ..., downsample.0/.1, fc; features.N / classifier.N; googlenet
conv1.conv, conv1.bn, inception3a.branch1.conv, ...; densenet
features.denseblock1.denselayer1.norm1, ...), so the zoo model is read by
structure (the torch reader's layers in registration order). Layouts are already
canonical. GoogLeNet's auxiliary heads (aux1, aux2) are not used in inference and
are skipped; its `transform_input` (a fixed input re-scaling that torchvision
switches on for its pretrained weights) has no spec counterpart and must be off.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import numpy as np
import torch

from ...native import NativeLayer
from ...zoo_import import ZooEntry, spec_for, state_dict
from ...zoo_import.core import Binding, ZooMismatchError, bind_by_order
from . import read
from .framework import DTYPES


def build(entry: ZooEntry, num_classes: int = 1000, input_shape=(3, 224, 224), dtype: str = "float32",
          seed: int = 0):
    """The zoo model with torchvision's own (seeded) initialisation, in eval mode."""
    import torchvision

    torch.manual_seed(seed)
    kwargs = dict(weights=None, num_classes=num_classes)
    if entry.native == "googlenet":
        kwargs.update(aux_logits=False, transform_input=False, init_weights=True)
    model = getattr(torchvision.models, entry.native)(**kwargs)
    return model.to(DTYPES[dtype]).eval()


def layers(model) -> List[NativeLayer]:
    """The zoo model's parameterised modules in registration order (the torch reader's)."""
    if getattr(model, "transform_input", False):
        raise ZooMismatchError("the zoo model re-scales its input (transform_input=True), which no spec "
                               "reproduces; build it with transform_input=False")
    out = []
    for layer in read.layers(model):
        if layer.name.startswith(state_dict.SKIPPED):
            continue
        if layer.kind == "other":
            raise TypeError(f"zoo layer {layer.name!r} ({layer.type_name}) holds parameters the importer "
                            f"does not know")
        if layer.kind == "batchnorm" and not layer.config["tracks"]:
            raise ZooMismatchError(f"zoo layer {layer.name!r} keeps no running statistics")
        out.append(layer)
    return out


_RESNET_DEPTHS = {("BasicBlock", (2, 2, 2, 2)): 18, ("BasicBlock", (3, 4, 6, 3)): 34,
                  ("Bottleneck", (3, 4, 6, 3)): 50, ("Bottleneck", (3, 4, 23, 3)): 101,
                  ("Bottleneck", (3, 8, 36, 3)): 152}
_VGG_CONVS = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}


def infer_arch(model) -> str:
    """torchvision's name of a torchvision model, from its class and structure
    (a state_dict alone does not tell: name it)."""
    from torch import nn

    kind = type(model).__name__
    if kind in ("AlexNet", "GoogLeNet"):
        return kind.lower()
    if kind == "VGG":
        convs = sum(isinstance(m, nn.Conv2d) for m in model.features)
        bn = any(isinstance(m, nn.BatchNorm2d) for m in model.features)
        if convs in _VGG_CONVS:
            return _VGG_CONVS[convs] + ("_bn" if bn else "")
    if kind == "ResNet":
        stages = [getattr(model, f"layer{i}") for i in range(1, 5)]
        depth = _RESNET_DEPTHS.get((type(stages[0][0]).__name__, tuple(len(s) for s in stages)))
        if depth:
            return f"resnet{depth}"
    if kind == "DenseNet":
        blocks = tuple(len(m) for name, m in model.features.named_children() if name.startswith("denseblock"))
        if blocks == (6, 12, 24, 16) and model.features.conv0.out_channels == 64:
            return "densenet121"
    raise ValueError(f"cannot tell which torchvision model this {kind} is; name it (arch=...)")


def bind(state_dict_or_module, arch=None, input_shape=None, **options) -> Binding:
    if isinstance(state_dict_or_module, Mapping):
        return state_dict.bind(state_dict_or_module, arch, input_shape=input_shape, **options)
    arch = infer_arch(state_dict_or_module) if arch is None else arch
    spec, _ = spec_for("torchvision", arch, input_shape=input_shape, **options)
    return Binding(spec, bind_by_order(spec, layers(state_dict_or_module)))


def forward(model, x: np.ndarray) -> np.ndarray:
    return read.forward(model, x)[0]


def capture(model, points: Dict[str, NativeLayer], x: np.ndarray) -> Dict[str, np.ndarray]:
    """spec path -> output of its zoo module (the torch reader's capture)."""
    _, store = read.forward(model, x, [layer.name for layer in points.values()])
    return {path: store[layer.name][1] for path, layer in points.items()}


def count_params(model) -> Tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return trainable, trainable + stats


def versions() -> Dict[str, str]:
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__}
