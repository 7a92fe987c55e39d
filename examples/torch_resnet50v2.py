"""ResNet50V2 in PyTorch, ported by hand from keras.applications' resnet_v2.py.

Written the way such ports usually are: our own module names, channels-first
tensors, PyTorch layers. It imports nothing from refnets. Check it with

    python -m parity resnet50v2 --port examples.torch_resnet50v2:build --port-backend torch
"""

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1.001e-5  # keras.applications' ResNets use 1.001e-5, not PyTorch's default 1e-5


class PreActBottleneck(nn.Module):
    """Keras `block2`: BN-ReLU pre-activation, 1x1 -> 3x3 (carries the stride) -> 1x1,
    added to a shortcut that is a 1x1 conv (first block of a stage), a strided 1x1
    max pool, or the input itself."""

    def __init__(self, in_channels, width, stride=1, conv_shortcut=False):
        super().__init__()
        self.stride = stride
        self.preact_bn = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        if conv_shortcut:
            self.shortcut = nn.Conv2d(in_channels, 4 * width, 1, stride=stride)
        elif stride > 1:
            self.shortcut = nn.MaxPool2d(1, stride=stride)
        else:
            self.shortcut = None
        self.conv_shortcut = conv_shortcut
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.conv3 = nn.Conv2d(width, 4 * width, 1)

    def forward(self, x):
        preact = F.relu(self.preact_bn(x))
        if self.conv_shortcut:
            identity = self.shortcut(preact)
        elif self.shortcut is not None:
            identity = self.shortcut(x)
        else:
            identity = x
        out = F.relu(self.bn1(self.conv1(preact)))
        out = self.conv2(F.pad(out, (1, 1, 1, 1)))  # Keras: ZeroPadding2D(1), then a 'valid' conv
        out = F.relu(self.bn2(out))
        return self.conv3(out) + identity


def make_stage(in_channels, width, blocks, stride):
    """Keras `stack2`: the stride sits in the stage's *last* block."""
    strides = [1] * (blocks - 1) + [stride]
    layers = [PreActBottleneck(in_channels, width, strides[0], conv_shortcut=True)]
    for block_stride in strides[1:]:
        layers.append(PreActBottleneck(4 * width, width, block_stride))
    return nn.Sequential(*layers)


class ResNet50V2(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.stem_conv = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.stem_pool = nn.MaxPool2d(3, stride=2)
        self.stage1 = make_stage(64, 64, 3, stride=2)
        self.stage2 = make_stage(256, 128, 4, stride=2)
        self.stage3 = make_stage(512, 256, 6, stride=2)
        self.stage4 = make_stage(1024, 512, 3, stride=1)
        self.post_bn = nn.BatchNorm2d(2048, eps=BN_EPS)
        self.classifier = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.stem_conv(x)
        x = self.stem_pool(F.pad(x, (1, 1, 1, 1)))  # Keras zero-pads, then pools without padding
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        x = F.relu(self.post_bn(x))
        return self.classifier(x.mean(dim=(2, 3)))


def build():
    return ResNet50V2()
