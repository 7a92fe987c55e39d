"""GoogLeNet (Inception v1) without auxiliary heads.

layout="paper": the paper's channel plan as in Dive into Deep Learning (plain
conv + ReLU, 5x5 branch, floor-mode 3x3/2 max pools with padding 1).
layout="torchvision": torchvision's variant (conv without bias + BatchNorm eps 1e-3
+ ReLU, a 3x3 kernel in the "5x5" branch, ceil-mode max pools, a 2x2 pool before
stage 5, dropout 0.2; no input transform).
"""

from ..registry import register
from ..spec import Dense, Dropout, GlobalAvgPool, ModelSpec, Parallel
from .layers import bn, conv, maxpool, positive, relu, seq

# name -> (1x1, (3x3 reduce, 3x3), (5x5 reduce, 5x5), pool projection)
INCEPTIONS = {
    "inception3a": (64, (96, 128), (16, 32), 32),
    "inception3b": (128, (128, 192), (32, 96), 64),
    "inception4a": (192, (96, 208), (16, 48), 64),
    "inception4b": (160, (112, 224), (24, 64), 64),
    "inception4c": (128, (128, 256), (24, 64), 64),
    "inception4d": (112, (144, 288), (32, 64), 64),
    "inception4e": (256, (160, 320), (32, 128), 128),
    "inception5a": (256, (160, 320), (32, 128), 128),
    "inception5b": (384, (192, 384), (48, 128), 128),
}
LAYOUTS = ("paper", "torchvision")


class _Layout:
    def __init__(self, name: str):
        if name not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {name!r}")
        self.torchvision = name == "torchvision"

    def unit(self, name: str, out: int, kernel: int, stride: int = 1, padding: int = 0):
        """conv + ReLU, or torchvision's BasicConv2d: conv (no bias) + BN + ReLU."""
        if self.torchvision:
            return seq(name, conv("conv", out, kernel, stride, padding, bias=False), bn("bn", eps=1e-3), relu("relu"))
        return seq(name, conv("conv", out, kernel, stride, padding), relu("relu"))

    def pool(self, name: str, kernel: int = 3, stride: int = 2):
        if self.torchvision:
            return maxpool(name, kernel, stride, 0, ceil_mode=True)
        return maxpool(name, kernel, stride, 1)

    def inception(self, name: str):
        c1, (c2r, c2), (c3r, c3), c4 = INCEPTIONS[name]
        k3 = 3 if self.torchvision else 5
        branches = (
            seq("branch1", self.unit("0", c1, 1)),
            seq("branch2", self.unit("0", c2r, 1), self.unit("1", c2, 3, padding=1)),
            seq("branch3", self.unit("0", c3r, 1), self.unit("1", c3, k3, padding=k3 // 2)),
            seq("branch4", maxpool("pool", 3, 1, 1, ceil_mode=self.torchvision), self.unit("1", c4, 1)),
        )
        return Parallel(name=name, branches=branches, merge="concat")


@register("googlenet")
def googlenet(in_channels: int = 3, num_classes: int = 1000, layout: str = "paper") -> ModelSpec:
    lay = _Layout(layout)
    layers = [lay.unit("conv1", 64, 7, 2, 3), lay.pool("maxpool1"), lay.unit("conv2", 64, 1),
              lay.unit("conv3", 192, 3, padding=1), lay.pool("maxpool2"),
              lay.inception("inception3a"), lay.inception("inception3b"), lay.pool("maxpool3")]
    layers += [lay.inception(f"inception4{c}") for c in "abcde"]
    layers += [lay.pool("maxpool4", 2, 2) if lay.torchvision else lay.pool("maxpool4"),
               lay.inception("inception5a"), lay.inception("inception5b"), GlobalAvgPool(name="avgpool")]
    if lay.torchvision:
        layers.append(Dropout(name="dropout", rate=0.2))
    layers.append(Dense(name="fc", out_features=positive("num_classes", num_classes)))
    return ModelSpec(name="googlenet", root=seq("", *layers),
                     input_shape=(positive("in_channels", in_channels), 224, 224),
                     options=(("in_channels", in_channels), ("num_classes", num_classes), ("layout", layout)))
