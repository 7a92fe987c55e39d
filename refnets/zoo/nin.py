"""Network in Network as in Dive into Deep Learning."""

from ..registry import register
from ..spec import Dropout, GlobalAvgPool, ModelSpec
from .layers import conv, maxpool, positive, relu, seq

# (out channels, kernel, stride, padding) of each mlpconv block; a 3x3/2 max pool follows the first three.
BLOCKS = ((96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1))


def mlpconv(name: str, out: int, kernel: int, stride: int, padding: int):
    return seq(name, conv("conv", out, kernel, stride, padding), relu("relu"),
               conv("mlp1", out, 1), relu("relu1"), conv("mlp2", out, 1), relu("relu2"))


@register("nin")
def nin(in_channels: int = 1, num_classes: int = 10) -> ModelSpec:
    positive("in_channels", in_channels)
    layers = []
    for i, (out, k, s, p) in enumerate(BLOCKS, start=1):
        layers += [mlpconv(f"block{i}", out, k, s, p), maxpool(f"pool{i}", 3, 2)]
    layers += [Dropout(name="dropout", rate=0.5), mlpconv("block4", positive("num_classes", num_classes), 3, 1, 1),
               GlobalAvgPool(name="gap")]
    return ModelSpec(name="nin", root=seq("", *layers), input_shape=(in_channels, 224, 224),
                     options=(("in_channels", in_channels), ("num_classes", num_classes)))
