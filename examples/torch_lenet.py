"""LeNet-5 (as in Dive into Deep Learning) in PyTorch, written by hand.
Imports nothing from refnets. Check it with

    python -m parity lenet --port examples.torch_lenet:build --port-backend torch
"""

import torch
from torch import nn


class LeNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.s2 = nn.AvgPool2d(2, stride=2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.s4 = nn.AvgPool2d(2, stride=2)
        self.f5 = nn.Linear(16 * 5 * 5, 120)
        self.f6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.s2(torch.sigmoid(self.c1(x)))
        x = self.s4(torch.sigmoid(self.c3(x)))
        x = torch.flatten(x, 1)
        x = torch.sigmoid(self.f5(x))
        x = torch.sigmoid(self.f6(x))
        return self.out(x)


def build():
    return LeNet()
