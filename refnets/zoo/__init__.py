"""The model zoo: one module per family; importing it registers every model."""

from . import alexnet, densenet, googlenet, lenet, mnist, nin, resnet, resnet_v2, vgg  # noqa: F401
