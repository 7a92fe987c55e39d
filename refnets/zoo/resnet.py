"""ResNet v1: basic blocks (18, 34) and bottlenecks (50, 101, 152). Module names
follow torchvision (conv1, bn1, layer1.0.conv1, ...) inside each block's residual
`res.body`.

layout="torchvision" (default): bottlenecks with the stride on the 3x3 (v1.5), no
conv biases. layout="gluon": MXNet Gluon model zoo's resnet*_v1 — bottlenecks with
the stride on the first 1x1 (v1) and a bias on both 1x1 convs (conv1, conv3);
basic blocks as torchvision's (Gluon's BasicBlockV1 is the same).
"""

from ..registry import register
from ..spec import Dense, GlobalAvgPool, Identity, ModelSpec, Parallel
from .layers import bn, conv, maxpool, positive, relu, seq

# name -> (block kind, blocks per stage)
PLANS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
WIDTHS = (64, 128, 256, 512)
EXPANSION = {"basic": 1, "bottleneck": 4}
LAYOUTS = ("torchvision", "gluon")


def _body(kind: str, width: int, stride: int, layout: str = "torchvision"):
    if kind == "basic":
        return seq("body", conv("conv1", width, 3, stride, 1, bias=False), bn("bn1"), relu("relu1"),
                   conv("conv2", width, 3, 1, 1, bias=False), bn("bn2"))
    if layout == "gluon":  # Gluon's BottleneckV1: stride on the first 1x1, biased 1x1 convs
        return seq("body", conv("conv1", width, 1, stride), bn("bn1"), relu("relu1"),
                   conv("conv2", width, 3, 1, 1, bias=False), bn("bn2"), relu("relu2"),
                   conv("conv3", width * 4, 1), bn("bn3"))
    return seq("body", conv("conv1", width, 1, bias=False), bn("bn1"), relu("relu1"),
               conv("conv2", width, 3, stride, 1, bias=False), bn("bn2"), relu("relu2"),
               conv("conv3", width * 4, 1, bias=False), bn("bn3"))


def residual(name: str, body, shortcut, use_residual: bool):
    """body + shortcut (`res`), or the body alone when `use_residual` is False."""
    branches = (body, shortcut) if use_residual else (body,)
    return Parallel(name=name, branches=branches, merge="add")


def _block(index: int, kind: str, in_ch: int, width: int, stride: int, use_residual: bool, layout: str):
    out_ch = width * EXPANSION[kind]
    if stride != 1 or in_ch != out_ch:
        shortcut = seq("downsample", conv("conv", out_ch, 1, stride, bias=False), bn("bn"))
    else:
        shortcut = Identity(name="shortcut")
    body = _body(kind, width, stride, layout)
    return seq(str(index), residual("res", body, shortcut, use_residual), relu("relu")), out_ch


def check_layout(layout: str, layouts) -> str:
    if layout not in layouts:
        raise ValueError(f"layout must be one of {', '.join(map(repr, layouts))}, got {layout!r}")
    return layout


def resnet(name: str, in_channels: int, num_classes: int, use_residual: bool,
           layout: str = "torchvision") -> ModelSpec:
    check_layout(layout, LAYOUTS)
    kind, depths = PLANS[name]
    layers = [conv("conv1", 64, 7, 2, 3, bias=False), bn("bn1"), relu("relu"), maxpool("maxpool", 3, 2, 1)]
    channels = 64
    for stage, (width, depth) in enumerate(zip(WIDTHS, depths), start=1):
        blocks = []
        for i in range(depth):
            stride = 2 if (i == 0 and stage > 1) else 1
            block, channels = _block(i, kind, channels, width, stride, use_residual, layout)
            blocks.append(block)
        layers.append(seq(f"layer{stage}", *blocks))
    layers += [GlobalAvgPool(name="avgpool"), Dense(name="fc", out_features=positive("num_classes", num_classes))]
    return ModelSpec(name=name, root=seq("", *layers), input_shape=(positive("in_channels", in_channels), 224, 224),
                     options=(("in_channels", in_channels), ("num_classes", num_classes),
                              ("use_residual", use_residual), ("layout", layout)))


def _register(name: str) -> None:
    @register(name)
    def build(in_channels: int = 3, num_classes: int = 1000, use_residual: bool = True,
              layout: str = "torchvision") -> ModelSpec:
        return resnet(name, in_channels, num_classes, bool(use_residual), layout)


for _name in PLANS:
    _register(_name)
