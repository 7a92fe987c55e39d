"""MXNet Gluon model-zoo adapter (mxnet.gluon.model_zoo.vision, pretrained=False).

Gluon's parameter names carry a global counter (resnetv10_conv0_weight), so the
zoo model is read by structure: its child blocks in registration order (the
attribute paths of `_collect_params_with_prefix()`, features.4.0.body.0.weight),
which in every zoo model here is the order the layers run in. Gluon already uses
the canonical layouts (OIHW kernels, (out, in) dense weights; a Dense flattens
N, C, H, W in C, H, W order), so nothing is transposed; BatchNorm's gamma and
beta are the canonical weight and bias. An affine-free BatchNorm
(`scale=False, center=False`, ResNet v2's input normalisation) still holds a gamma
(ignored by the operator: fix_gamma) and a beta (used, so it must be zero); neither
is a canonical weight.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision

from ..backends.mxnet import framework as MB
from ..spec import join
from . import ZooEntry, spec_for
from .core import Binding, NativeLayer, Slot, bind_by_order

CONTEXT = MB.CONTEXT
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


def _slot(param) -> Slot:
    def read():
        return param.data().asnumpy()

    def write(array):
        param.set_data(mx.nd.array(np.asarray(array, dtype=param.dtype), ctx=CONTEXT, dtype=param.dtype))

    return Slot(tuple(int(v) for v in param.shape), read, write)


def _activation(block) -> str | None:
    act = getattr(block, "act", None)
    return None if act is None else act._act_type


def _batchnorm(path: str, block) -> NativeLayer:
    scale = not block._kwargs["fix_gamma"]
    center = bool(block.beta._differentiable)
    params = {}
    if scale:
        params["weight"] = _slot(block.gamma)
    if center:
        params["bias"] = _slot(block.beta)
    params["running_mean"] = _slot(block.running_mean)
    params["running_var"] = _slot(block.running_var)
    if scale and center:
        affine = True
    elif not (scale or center) and not np.any(block.beta.data().asnumpy()):
        affine = False
    else:
        affine = f"scale={scale}, center={center}" + ("" if center else ", with a non-zero beta")
    if block._kwargs["axis"] != 1:
        raise TypeError(f"zoo layer {path!r}: BatchNorm over axis {block._kwargs['axis']}, expected 1 (NCHW)")
    return NativeLayer(path, "batchnorm", params, {"eps": float(block._kwargs["eps"]), "affine": affine}, block)


def _walk(block, prefix: str, out: List[NativeLayer]) -> None:
    for name, child in block._children.items():
        path = join(prefix, name)
        if isinstance(child, nn.Conv2D):
            if child._kwargs["layout"] != "NCHW":
                raise TypeError(f"zoo layer {path!r}: layout {child._kwargs['layout']}, expected NCHW")
            params = {"weight": _slot(child.weight)}
            if child.bias is not None:
                params["bias"] = _slot(child.bias)
            out.append(NativeLayer(path, "conv", params, {"stride": tuple(child._kwargs["stride"]),
                                                          "activation": _activation(child)}, child))
        elif isinstance(child, nn.Dense):
            params = {"weight": _slot(child.weight)}
            if child.bias is not None:
                params["bias"] = _slot(child.bias)
            out.append(NativeLayer(path, "dense", params, {"activation": _activation(child)}, child))
        elif isinstance(child, nn.BatchNorm):
            out.append(_batchnorm(path, child))
        elif child._children:
            _walk(child, path, out)
        elif child._reg_params:
            raise TypeError(f"zoo layer {path!r} ({type(child).__name__}) holds parameters the importer "
                            f"does not know")


def layers(net: nn.HybridBlock) -> List[NativeLayer]:
    out: List[NativeLayer] = []
    _walk(net, "", out)
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


def _dtype(net) -> str:
    return next(iter(net.collect_params().values())).dtype


def forward(net: nn.HybridBlock, x: np.ndarray) -> np.ndarray:
    """Inference-mode output for a channels-first batch."""
    with autograd.pause(train_mode=False):
        return net(mx.nd.array(np.ascontiguousarray(x), ctx=CONTEXT, dtype=_dtype(net))).asnumpy()


def capture(net: nn.HybridBlock, points: Dict[str, NativeLayer], x: np.ndarray) -> Dict[str, np.ndarray]:
    """spec path -> output of its zoo block; the net runs imperatively (a hybridized
    block fires no child hooks), then is hybridized again."""
    store: Dict[str, np.ndarray] = {}

    def hook_for(path):
        def hook(_block, _inputs, output):
            store[path] = output.asnumpy()
        return hook

    handles = [layer.handle.register_forward_hook(hook_for(p)) for p, layer in points.items()]
    net.hybridize(False)
    try:
        forward(net, x)
    finally:
        for handle in handles:
            handle.detach()
        net.hybridize()
    return store


def count_params(net: nn.HybridBlock) -> Tuple[int, int]:
    """(trainable, total) as Gluon holds them: total includes BatchNorm statistics
    and an affine-free BatchNorm's fixed gamma and beta."""
    params = list(net.collect_params().values())
    trainable = sum(int(np.prod(p.shape)) for p in params if p.grad_req != "null")
    return trainable, sum(int(np.prod(p.shape)) for p in params)


def versions() -> Dict[str, str]:
    return MB.versions()
