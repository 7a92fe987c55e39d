"""LeNet-5 as in Dive into Deep Learning (sigmoid activations, average pools)."""

from ..registry import register
from ..spec import Flatten, ModelSpec
from .layers import act, avgpool, conv, dense, positive, seq


@register("lenet")
def lenet(in_channels: int = 1, num_classes: int = 10) -> ModelSpec:
    positive("in_channels", in_channels)
    root = seq(
        "",
        conv("conv1", 6, 5, padding=2), act("act1", "sigmoid"), avgpool("pool1", 2, 2),
        conv("conv2", 16, 5), act("act2", "sigmoid"), avgpool("pool2", 2, 2),
        Flatten(name="flatten"),
        dense("fc1", 120), act("act3", "sigmoid"),
        dense("fc2", 84), act("act4", "sigmoid"),
        dense("fc3", positive("num_classes", num_classes)),
    )
    return ModelSpec(name="lenet", root=root, input_shape=(in_channels, 28, 28),
                     options=(("in_channels", in_channels), ("num_classes", num_classes)))
