"""DenseNet-121 in torchvision's layout (growth 32, blocks 6-12-24-16, bottleneck
width 4 x growth, compression 0.5, BatchNorm eps 1e-5). Each dense layer is a
channel concat of its input and its new features (input first, as torchvision)."""

from ..registry import register
from ..spec import Dense, GlobalAvgPool, Identity, ModelSpec, Parallel
from .layers import avgpool, bn, conv, maxpool, positive, relu, seq

PLANS = {"densenet121": (32, (6, 12, 24, 16), 64)}  # growth, layers per block, stem width
BN_SIZE = 4


def _dense_layer(index: int, growth: int):
    new = seq("new", bn("norm1"), relu("relu1"), conv("conv1", BN_SIZE * growth, 1, bias=False),
              bn("norm2"), relu("relu2"), conv("conv2", growth, 3, 1, 1, bias=False))
    return Parallel(name=f"denselayer{index}", branches=(Identity(name="input"), new), merge="concat")


def _transition(index: int, out: int):
    return seq(f"transition{index}", bn("norm"), relu("relu"), conv("conv", out, 1, bias=False),
               avgpool("pool", 2, 2))


def densenet(name: str, in_channels: int, num_classes: int) -> ModelSpec:
    growth, blocks, channels = PLANS[name]
    features = [conv("conv0", channels, 7, 2, 3, bias=False), bn("norm0"), relu("relu0"), maxpool("pool0", 3, 2, 1)]
    for b, depth in enumerate(blocks, start=1):
        features.append(seq(f"denseblock{b}", *[_dense_layer(i, growth) for i in range(1, depth + 1)]))
        channels += depth * growth
        if b < len(blocks):
            channels //= 2
            features.append(_transition(b, channels))
    features += [bn("norm5"), relu("relu5")]
    root = seq("", seq("features", *features), GlobalAvgPool(name="avgpool"),
               Dense(name="classifier", out_features=positive("num_classes", num_classes)))
    return ModelSpec(name=name, root=root, input_shape=(positive("in_channels", in_channels), 224, 224),
                     options=(("in_channels", in_channels), ("num_classes", num_classes)))


@register("densenet121")
def densenet121(in_channels: int = 3, num_classes: int = 1000) -> ModelSpec:
    return densenet("densenet121", in_channels, num_classes)
