"""A residual block as Gluon tutorials write it, with a biased 1x1 shortcut and no BN on it."""

from mxnet import nd
from mxnet.gluon import nn


class Residual(nn.HybridBlock):
    def __init__(self, channels, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = nn.Conv2D(channels, kernel_size=3, padding=1, strides=strides)
        self.bn1 = nn.BatchNorm()
        self.conv2 = nn.Conv2D(channels, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm()
        self.conv3 = nn.Conv2D(channels, kernel_size=1, strides=strides)

    def hybrid_forward(self, F, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.conv3(x))


def build():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, kernel_size=3, padding=1), nn.BatchNorm(), nn.Activation("relu"),
            Residual(32, strides=2), Residual(32), nn.GlobalAvgPool2D(), nn.Dense(10))
    net.initialize()
    randomise_statistics(net, (3, 32, 32))
    return net


def randomise_statistics(net, input_shape):
    """Non-trivial BatchNorm running statistics, as a trained model has (Gluon infers shapes on a first call)."""
    net(nd.zeros((1,) + input_shape))
    for name, param in net.collect_params(".*running_mean|.*running_var").items():
        low = 0.5 if name.endswith("running_var") else -0.5
        param.set_data(nd.random.uniform(low, low + 1.0, shape=param.shape))
