"""AlexNet in torchvision's layout (one-tower, 64-192-384-256-256 channels)."""

from ..registry import register
from ..spec import AdaptiveAvgPool, Dropout, Flatten, ModelSpec
from .layers import conv, dense, maxpool, positive, rate, relu, seq

# (name, out channels, kernel, stride, padding, max pool after)
FEATURES = (
    ("conv1", 64, 11, 4, 2, True),
    ("conv2", 192, 5, 1, 2, True),
    ("conv3", 384, 3, 1, 1, False),
    ("conv4", 256, 3, 1, 1, False),
    ("conv5", 256, 3, 1, 1, True),
)


def _features():
    layers = []
    for i, (name, out, k, s, p, pool) in enumerate(FEATURES, start=1):
        layers += [conv(name, out, k, s, p), relu(f"relu{i}")]
        if pool:
            layers.append(maxpool(f"pool{i}", 3, 2))
    return seq("features", *layers)


@register("alexnet")
def alexnet(in_channels: int = 3, num_classes: int = 1000, dropout: float = 0.5) -> ModelSpec:
    positive("in_channels", in_channels)
    classifier = seq(
        "classifier",
        Dropout(name="drop1", rate=rate("dropout", dropout)), dense("fc1", 4096), relu("relu1"),
        Dropout(name="drop2", rate=dropout), dense("fc2", 4096), relu("relu2"),
        dense("fc3", positive("num_classes", num_classes)),
    )
    root = seq("", _features(), AdaptiveAvgPool(name="avgpool", output_size=(6, 6)),
               Flatten(name="flatten"), classifier)
    return ModelSpec(name="alexnet", root=root, input_shape=(in_channels, 224, 224),
                     options=(("in_channels", in_channels), ("num_classes", num_classes), ("dropout", dropout)))
