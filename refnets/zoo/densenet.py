"""DenseNet-121 (growth 32, blocks 6-12-24-16, bottleneck width 4 x growth,
compression 0.5). Each dense layer is a channel concat of its input and its new
features (input first).

layout="torchvision" (default): torchvision's modules and names (features.conv0,
features.denseblock1.denselayer1.norm1, ...), BatchNorm eps 1e-5, a 3x3/2 max pool
with its own padding 1 after the stem. (MXNet Gluon's densenet121 is the same
network: at 224x224 its final 7x7 average pool is this global average pool.)

layout="keras": keras.applications.DenseNet121: BatchNorm eps 1.001e-5, a zero pad
then an unpadded 3x3/2 max pool after the stem, and Keras's layer names: a spec
path with the segment `new` removed, joined by `_`, is the Keras layer name
(conv1_conv, conv2_block1_0_bn, pool2_conv, bn, predictions, ...).
"""

from ..registry import register
from ..spec import Dense, GlobalAvgPool, Identity, ModelSpec, Parallel, ZeroPad
from .layers import avgpool, bn, conv, maxpool, positive, relu, seq
from .resnet import check_layout

PLANS = {"densenet121": (32, (6, 12, 24, 16), 64)}  # growth, layers per block, stem width
BN_SIZE = 4
LAYOUTS = ("torchvision", "keras")
KERAS_EPS = 1.001e-5


def _dense_layer(index: int, growth: int):
    new = seq("new", bn("norm1"), relu("relu1"), conv("conv1", BN_SIZE * growth, 1, bias=False),
              bn("norm2"), relu("relu2"), conv("conv2", growth, 3, 1, 1, bias=False))
    return Parallel(name=f"denselayer{index}", branches=(Identity(name="input"), new), merge="concat")


def _transition(index: int, out: int):
    return seq(f"transition{index}", bn("norm"), relu("relu"), conv("conv", out, 1, bias=False),
               avgpool("pool", 2, 2))


def _torchvision_root(growth, blocks, channels, num_classes):
    features = [conv("conv0", channels, 7, 2, 3, bias=False), bn("norm0"), relu("relu0"), maxpool("pool0", 3, 2, 1)]
    for b, depth in enumerate(blocks, start=1):
        features.append(seq(f"denseblock{b}", *[_dense_layer(i, growth) for i in range(1, depth + 1)]))
        channels += depth * growth
        if b < len(blocks):
            channels //= 2
            features.append(_transition(b, channels))
    features += [bn("norm5"), relu("relu5")]
    return seq("", seq("features", *features), GlobalAvgPool(name="avgpool"),
               Dense(name="classifier", out_features=num_classes))


def _keras_conv_block(index: int, growth: int):
    new = seq("new", bn("0_bn", KERAS_EPS), relu("0_relu"), conv("1_conv", BN_SIZE * growth, 1, bias=False),
              bn("1_bn", KERAS_EPS), relu("1_relu"), conv("2_conv", growth, 3, 1, 1, bias=False))
    return Parallel(name=f"block{index}", branches=(Identity(name="input"), new), merge="concat")


def _keras_root(growth, blocks, channels, num_classes):
    layers = [seq("conv1", conv("conv", channels, 7, 2, 3, bias=False), bn("bn", KERAS_EPS), relu("relu")),
              ZeroPad(name="pool1_pad", padding=(1, 1, 1, 1)), maxpool("pool1", 3, 2)]
    for b, depth in enumerate(blocks, start=1):
        layers.append(seq(f"conv{b + 1}", *[_keras_conv_block(i, growth) for i in range(1, depth + 1)]))
        channels += depth * growth
        if b < len(blocks):
            channels //= 2
            layers.append(seq(f"pool{b + 1}", bn("bn", KERAS_EPS), relu("relu"), conv("conv", channels, 1, bias=False),
                              avgpool("pool", 2, 2)))
    layers += [bn("bn", KERAS_EPS), relu("relu"), GlobalAvgPool(name="avg_pool"),
               Dense(name="predictions", out_features=num_classes)]
    return seq("", *layers)


def densenet(name: str, in_channels: int, num_classes: int, layout: str = "torchvision") -> ModelSpec:
    check_layout(layout, LAYOUTS)
    growth, blocks, channels = PLANS[name]
    build_root = _keras_root if layout == "keras" else _torchvision_root
    root = build_root(growth, blocks, channels, positive("num_classes", num_classes))
    return ModelSpec(name=name, root=root, input_shape=(positive("in_channels", in_channels), 224, 224),
                     options=(("in_channels", in_channels), ("num_classes", num_classes), ("layout", layout)))


@register("densenet121")
def densenet121(in_channels: int = 3, num_classes: int = 1000, layout: str = "torchvision") -> ModelSpec:
    return densenet("densenet121", in_channels, num_classes, layout)
