"""Two small MNIST nets common in teaching (1x28x28, 10 classes).

mnist_googlenet: conv 10@5x5, 2x2 max pool, ReLU, Inception-A (1x1: 16; 1x1 16 ->
5x5 24; 1x1 16 -> 3x3 24 -> 3x3 24; 3x3/1 avg pool (padding counted) -> 1x1 24:
88 channels), conv 20@5x5, max pool, ReLU, Inception-A, dense 1408 -> 10.
mnist_resnet: conv 16@5x5, ReLU, max pool, residual block(16), conv 32@5x5, ReLU,
max pool, residual block(32), dense 512 -> 10; a residual block is
relu(x + conv(relu(conv(x)))) with 3x3 convs.
"""

from ..registry import register
from ..spec import Dense, Flatten, Identity, ModelSpec, Parallel
from .layers import avgpool, conv, maxpool, positive, relu, seq
from .resnet import residual


def _inception_a(name: str):
    branches = (
        seq("branch1x1", conv("conv", 16, 1)),
        seq("branch5x5", conv("conv1", 16, 1), conv("conv2", 24, 5, padding=2)),
        seq("branch3x3", conv("conv1", 16, 1), conv("conv2", 24, 3, padding=1), conv("conv3", 24, 3, padding=1)),
        seq("branch_pool", avgpool("pool", 3, 1, 1, count_include_pad=True), conv("conv", 24, 1)),
    )
    return Parallel(name=name, branches=branches, merge="concat")


def _options(in_channels, num_classes, **extra):
    return (("in_channels", in_channels), ("num_classes", num_classes)) + tuple(extra.items())


@register("mnist_googlenet")
def mnist_googlenet(in_channels: int = 1, num_classes: int = 10) -> ModelSpec:
    root = seq("", conv("conv1", 10, 5), maxpool("pool1", 2, 2), relu("relu1"), _inception_a("incep1"),
               conv("conv2", 20, 5), maxpool("pool2", 2, 2), relu("relu2"), _inception_a("incep2"),
               Flatten(name="flatten"), Dense(name="fc", out_features=positive("num_classes", num_classes)))
    return ModelSpec(name="mnist_googlenet", root=root, input_shape=(positive("in_channels", in_channels), 28, 28),
                     options=_options(in_channels, num_classes))


def _residual_block(name: str, channels: int, use_residual: bool):
    body = seq("body", conv("conv1", channels, 3, padding=1), relu("relu1"), conv("conv2", channels, 3, padding=1))
    return seq(name, residual("res", body, Identity(name="shortcut"), use_residual), relu("relu"))


@register("mnist_resnet")
def mnist_resnet(in_channels: int = 1, num_classes: int = 10, use_residual: bool = True) -> ModelSpec:
    root = seq("", conv("conv1", 16, 5), relu("relu1"), maxpool("pool1", 2, 2),
               _residual_block("rblock1", 16, bool(use_residual)),
               conv("conv2", 32, 5), relu("relu2"), maxpool("pool2", 2, 2),
               _residual_block("rblock2", 32, bool(use_residual)),
               Flatten(name="flatten"), Dense(name="fc", out_features=positive("num_classes", num_classes)))
    return ModelSpec(name="mnist_resnet", root=root, input_shape=(positive("in_channels", in_channels), 28, 28),
                     options=_options(in_channels, num_classes, use_residual=use_residual))
