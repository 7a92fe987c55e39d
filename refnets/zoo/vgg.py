"""VGG 11/13/16/19 with torchvision's configurations, optional BatchNorm."""

from ..registry import register
from ..spec import AdaptiveAvgPool, Dropout, Flatten, ModelSpec
from .layers import bn, conv, dense, maxpool, positive, rate, relu, seq

# Convolutions per block (64, 128, 256, 512, 512 channels), each block ends in a 2x2 max pool.
CHANNELS = (64, 128, 256, 512, 512)
DEPTHS = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}


def _block(index: int, channels: int, depth: int, batch_norm: bool):
    layers = []
    for j in range(1, depth + 1):
        layers.append(conv(f"conv{j}", channels, 3, 1, 1))
        if batch_norm:
            layers.append(bn(f"bn{j}"))
        layers.append(relu(f"relu{j}"))
    layers.append(maxpool("pool", 2, 2))
    return seq(f"block{index}", *layers)


def vgg(name: str, in_channels: int = 3, num_classes: int = 1000, batch_norm: bool = False,
        dropout: float = 0.5) -> ModelSpec:
    positive("in_channels", in_channels)
    blocks = [_block(i, c, d, bool(batch_norm)) for i, (c, d) in enumerate(zip(CHANNELS, DEPTHS[name]), start=1)]
    classifier = seq(
        "classifier",
        dense("fc1", 4096), relu("relu1"), Dropout(name="drop1", rate=rate("dropout", dropout)),
        dense("fc2", 4096), relu("relu2"), Dropout(name="drop2", rate=dropout),
        dense("fc3", positive("num_classes", num_classes)),
    )
    root = seq("", seq("features", *blocks), AdaptiveAvgPool(name="avgpool", output_size=(7, 7)),
               Flatten(name="flatten"), classifier)
    options = (("in_channels", in_channels), ("num_classes", num_classes), ("batch_norm", batch_norm),
               ("dropout", dropout))
    return ModelSpec(name=name, root=root, input_shape=(in_channels, 224, 224), options=options)


def _register(name: str) -> None:
    @register(name)
    def build(in_channels: int = 3, num_classes: int = 1000, batch_norm: bool = False,
              dropout: float = 0.5) -> ModelSpec:
        return vgg(name, in_channels, num_classes, batch_norm, dropout)


for _name in DEPTHS:
    _register(_name)
