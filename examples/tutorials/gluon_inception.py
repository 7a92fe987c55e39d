"""An Inception block as a plain Gluon Block: four branches joined by nd.concat."""

from mxnet import nd
from mxnet.gluon import nn


class Inception(nn.Block):
    def __init__(self, c1, c2, c3, c4, **kwargs):
        super().__init__(**kwargs)
        self.p1_1 = nn.Conv2D(c1, kernel_size=1, activation="relu")
        self.p2_1 = nn.Conv2D(c2[0], kernel_size=1, activation="relu")
        self.p2_2 = nn.Conv2D(c2[1], kernel_size=3, padding=1, activation="relu")
        self.p3_1 = nn.Conv2D(c3[0], kernel_size=1, activation="relu")
        self.p3_2 = nn.Conv2D(c3[1], kernel_size=5, padding=2, activation="relu")
        self.p4_1 = nn.MaxPool2D(pool_size=3, strides=1, padding=1)
        self.p4_2 = nn.Conv2D(c4, kernel_size=1, activation="relu")

    def forward(self, x):
        p1 = self.p1_1(x)
        p2 = self.p2_2(self.p2_1(x))
        p3 = self.p3_2(self.p3_1(x))
        p4 = self.p4_2(self.p4_1(x))
        return nd.concat(p1, p2, p3, p4, dim=1)


class Net(nn.Block):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stem = nn.Conv2D(16, kernel_size=3, padding=1, activation="relu")
        self.block = Inception(8, (8, 12), (4, 6), 6)
        self.pool = nn.GlobalAvgPool2D()
        self.fc = nn.Dense(10)

    def forward(self, x):
        return self.fc(self.pool(self.block(self.stem(x))))


def build():
    net = Net()
    net.initialize()
    return net
