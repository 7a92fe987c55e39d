"""MXNet Gluon model-zoo adapter (mxnet.gluon.model_zoo.vision, pretrained=False).

Gluon's parameter names carry a global counter (resnetv10_conv0_weight), so the
zoo model is read by structure: the Gluon reader's layers in registration order
(child paths such as features.4.0.body.0), which in every zoo model here is the
order the layers run in. See `read` for the layouts and the affine-free BatchNorm.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from ...native import NativeLayer
from ...zoo_import import ZooEntry, spec_for
from ...zoo_import.core import Binding, bind_by_order
from . import read
from mxnet.gluon.model_zoo import vision

from .framework import CONTEXT, autograd, mx, nn

# Gluon's own model-zoo training recipes initialise with this (layers with their own
# initialisers, VGG's say, keep them); `initialize()`'s default Uniform(0.07)
# would let deep ResNets' activations vanish.
INITIALIZER = dict(rnd_type="gaussian", factor_type="in", magnitude=2)


def build(entry: ZooEntry, num_classes: int = 1000, input_shape=(3, 224, 224), dtype: str = "float32",
          seed: int = 0) -> nn.HybridBlock:
    """The zoo model, initialised (seeded), cast to `dtype`, shapes inferred for
    `input_shape`, hybridized."""
    mx.random.seed(seed)
    net = vision.get_model(entry.native, pretrained=False, classes=num_classes)
    net.cast(dtype)  # before the (deferred) initialisation: no float32 copy of a 140M-parameter VGG first
    net.initialize(mx.init.Xavier(**INITIALIZER), ctx=CONTEXT)
    with autograd.pause(train_mode=False):  # completes Gluon's deferred initialisation
        net(mx.nd.zeros((1,) + tuple(input_shape), ctx=CONTEXT, dtype=dtype))
    net.hybridize()
    mx.nd.waitall()  # MXNet runs asynchronously: finish the initialisation here, not in the first read
    return net


def layers(net: nn.HybridBlock) -> List[NativeLayer]:
    """The zoo model's parameterised blocks (the Gluon reader's), NCHW only."""
    out = []
    for layer in read.layers(net):
        block = layer.handle
        if isinstance(block, nn.Conv2D) and block._kwargs["layout"] != "NCHW":
            raise TypeError(f"zoo layer {layer.name!r}: layout {block._kwargs['layout']}, expected NCHW")
        if isinstance(block, nn.BatchNorm) and block._kwargs["axis"] != 1:
            raise TypeError(f"zoo layer {layer.name!r}: BatchNorm over axis {block._kwargs['axis']}, expected 1 (NCHW)")
        if layer.kind == "other":
            raise TypeError(f"zoo layer {layer.name!r} ({layer.type_name}) holds parameters the importer "
                            f"does not know")
        out.append(layer)
    return out


_RESNET_DEPTHS = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34, ("bottle", (3, 4, 6, 3)): 50,
                  ("bottle", (3, 4, 23, 3)): 101, ("bottle", (3, 8, 36, 3)): 152}
_VGG_CONVS = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}


def infer_arch(net: nn.HybridBlock) -> str:
    """The zoo's name of a Gluon model-zoo block, from its class and structure."""
    kind = type(net).__name__
    children = list(net.features._children.values()) if hasattr(net, "features") else []
    if kind == "AlexNet":
        return "alexnet"
    if kind == "VGG":
        convs = sum(isinstance(c, nn.Conv2D) for c in children)
        bn = any(isinstance(c, nn.BatchNorm) for c in children)
        if convs in _VGG_CONVS:
            return _VGG_CONVS[convs] + ("_bn" if bn else "")
    if kind == "DenseNet":
        stages = tuple(len(c._children) for c in children if type(c).__name__ == "HybridSequential"
                       and c._children and type(next(iter(c._children.values()))).__name__ == "HybridConcurrent")
        if stages == (6, 12, 24, 16):
            return "densenet121"
    if kind in ("ResNetV1", "ResNetV2"):
        stages = [c for c in children if type(c).__name__ == "HybridSequential" and c._children]
        blocks = [type(next(iter(s._children.values()))).__name__ for s in stages]
        block = "basic" if blocks and blocks[0].startswith("Basic") else "bottle"
        depth = _RESNET_DEPTHS.get((block, tuple(len(s._children) for s in stages)))
        if depth:
            return f"resnet{depth}_v{kind[-1]}"
    raise ValueError(f"cannot tell which Gluon model-zoo model this {kind} is; name it (arch=...)")


def bind(net: nn.HybridBlock, arch=None, input_shape=None, **options) -> Binding:
    spec, _ = spec_for("gluon", arch or infer_arch(net), input_shape=input_shape, **options)
    return Binding(spec, bind_by_order(spec, layers(net)))


def forward(net: nn.HybridBlock, x: np.ndarray) -> np.ndarray:
    """Inference-mode output for a channels-first batch (the hybridized graph)."""
    dtype = next(iter(net.collect_params().values())).dtype
    with autograd.pause(train_mode=False):
        return net(mx.nd.array(np.ascontiguousarray(x), ctx=CONTEXT, dtype=dtype)).asnumpy()


def capture(net: nn.HybridBlock, points: Dict[str, NativeLayer], x: np.ndarray) -> Dict[str, np.ndarray]:
    """spec path -> output of its zoo block (the Gluon reader's capture)."""
    _, store = read.forward(net, x, [layer.name for layer in points.values()])
    return {path: store[layer.name][1] for path, layer in points.items()}


def count_params(net: nn.HybridBlock) -> Tuple[int, int]:
    """(trainable, total) as Gluon holds them: total includes BatchNorm statistics
    and an affine-free BatchNorm's fixed gamma and beta."""
    params = list(net.collect_params().values())
    trainable = sum(int(np.prod(p.shape)) for p in params if p.grad_req != "null")
    return trainable, sum(int(np.prod(p.shape)) for p in params)


def versions() -> Dict[str, str]:
    return read.versions()
