"""torchvision adapter (an optional extra: torchvision is imported only to build
a zoo model; a state_dict is read without it).

torchvision's modules are registered in the order they run (conv1, bn1,
layer1.0.conv1, ..., downsample.0/.1, fc; features.N / classifier.N; googlenet
conv1.conv, conv1.bn, inception3a.branch1.conv, ...; densenet
features.denseblock1.denselayer1.norm1, ...), so the zoo model is read by
structure, like Gluon's. Layouts are already canonical (OIHW, (out, in), C, H, W
flatten order). GoogLeNet's auxiliary heads (aux1, aux2) are not used in
inference and are skipped; its `transform_input` (a fixed input re-scaling that
torchvision switches on for its pretrained weights) has no spec counterpart and
must be off.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import numpy as np

from . import ZooEntry, spec_for
from .core import Binding, NativeLayer, Slot, ZooMismatchError, bind_by_order

SKIPPED = ("aux1.", "aux2.")  # googlenet's auxiliary classifiers
DTYPES = ("float32", "float64")


def _torch():
    import torch

    return torch


def build(entry: ZooEntry, num_classes: int = 1000, input_shape=(3, 224, 224), dtype: str = "float32",
          seed: int = 0):
    """The zoo model with torchvision's own (seeded) initialisation, in eval mode."""
    import torchvision

    torch = _torch()
    torch.manual_seed(seed)
    kwargs = dict(weights=None, num_classes=num_classes)
    if entry.native == "googlenet":
        kwargs.update(aux_logits=False, transform_input=False, init_weights=True)
    model = getattr(torchvision.models, entry.native)(**kwargs)
    return model.to({"float32": torch.float32, "float64": torch.float64}[dtype]).eval()


def _array(value) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _tensor_slot(tensor) -> Slot:
    def read():
        return _array(tensor).copy()

    def write(array):
        torch = _torch()
        with torch.no_grad():
            tensor.copy_(torch.from_numpy(np.asarray(array, dtype=_array(tensor).dtype)))

    return Slot(tuple(int(v) for v in tensor.shape), read, write)


def _module_layers(model) -> List[NativeLayer]:
    from torch import nn

    if getattr(model, "transform_input", False):
        raise ZooMismatchError("the zoo model re-scales its input (transform_input=True), which no spec "
                               "reproduces; build it with transform_input=False")
    out = []
    for path, module in model.named_modules():
        if path.startswith(SKIPPED):
            continue
        if isinstance(module, nn.Conv2d):
            params = {"weight": _tensor_slot(module.weight)}
            if module.bias is not None:
                params["bias"] = _tensor_slot(module.bias)
            out.append(NativeLayer(path, "conv", params, {"stride": tuple(module.stride)}, module))
        elif isinstance(module, nn.Linear):
            params = {"weight": _tensor_slot(module.weight)}
            if module.bias is not None:
                params["bias"] = _tensor_slot(module.bias)
            out.append(NativeLayer(path, "dense", params, {}, module))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            if not module.track_running_stats:
                raise ZooMismatchError(f"zoo layer {path!r} keeps no running statistics")
            params = {"weight": _tensor_slot(module.weight), "bias": _tensor_slot(module.bias)} if module.affine else {}
            params.update(running_mean=_tensor_slot(module.running_mean), running_var=_tensor_slot(module.running_var))
            out.append(NativeLayer(path, "batchnorm", params, {"eps": float(module.eps), "affine": bool(module.affine)},
                                   module))
        elif not list(module.children()) and list(module.parameters(recurse=False)):
            raise TypeError(f"zoo layer {path!r} ({type(module).__name__}) holds parameters the importer "
                            f"does not know")
    return out


def _state_slot(state: Mapping, key: str) -> Slot:
    def read():
        return _array(state[key]).copy()

    def write(array):
        if hasattr(state[key], "copy_"):
            _tensor_slot(state[key]).write(array)
        else:
            state[key] = np.asarray(array, dtype=_array(state[key]).dtype).copy()

    return Slot(tuple(int(v) for v in np.shape(state[key])), read, write)


def _state_dict_layers(state: Mapping) -> List[NativeLayer]:
    """Layers from a state_dict alone: keys grouped by module in order; a module
    with running statistics is a BatchNorm, a 4-D weight a conv, a 2-D one a dense."""
    groups: Dict[str, Dict[str, str]] = {}
    for key in state:
        if key.startswith(SKIPPED) or key.endswith("num_batches_tracked"):
            continue
        module, _, param = key.rpartition(".")
        groups.setdefault(module, {})[param] = key
    out = []
    for module, params in groups.items():
        slots = {p: _state_slot(state, k) for p, k in params.items()}
        if "running_mean" in params:
            kind = "batchnorm"
        elif "weight" in params and len(slots["weight"].shape) == 4:
            kind = "conv"
        elif "weight" in params and len(slots["weight"].shape) == 2:
            kind = "dense"
        else:
            raise ZooMismatchError(f"state_dict entry {module!r} ({sorted(params)}) is no conv, dense or BatchNorm")
        out.append(NativeLayer(module, kind, slots, {}, None))
    return out


def layers(state_dict_or_module) -> List[NativeLayer]:
    if isinstance(state_dict_or_module, Mapping):
        return _state_dict_layers(state_dict_or_module)
    return _module_layers(state_dict_or_module)


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
    if arch is None:
        if isinstance(state_dict_or_module, Mapping):
            raise ValueError("a state_dict does not say which model it is: name it (arch=...)")
        arch = infer_arch(state_dict_or_module)
    spec, _ = spec_for("torchvision", arch, input_shape=input_shape, **options)
    return Binding(spec, bind_by_order(spec, layers(state_dict_or_module)))


def _input(model, x: np.ndarray):
    torch = _torch()
    dtype = next(model.parameters()).dtype
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


def forward(model, x: np.ndarray) -> np.ndarray:
    torch = _torch()
    model.eval()
    with torch.inference_mode():
        return model(_input(model, x)).cpu().numpy()


def capture(model, points: Dict[str, NativeLayer], x: np.ndarray) -> Dict[str, np.ndarray]:
    torch = _torch()
    store: Dict[str, np.ndarray] = {}

    def hook_for(path):
        def hook(_module, _inputs, output):
            store[path] = output.detach().cpu().numpy().copy()
        return hook

    handles = [layer.handle.register_forward_hook(hook_for(p)) for p, layer in points.items()]
    try:
        model.eval()
        with torch.inference_mode():
            model(_input(model, x))
    finally:
        for handle in handles:
            handle.remove()
    return store


def count_params(model) -> Tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return trainable, trainable + stats


def versions() -> Dict[str, str]:
    import torch
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__}
