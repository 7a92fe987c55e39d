"""The model zoo: one module per family; importing it registers every model."""

from . import alexnet, lenet, nin, vgg  # noqa: F401
