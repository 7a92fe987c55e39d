"""The MXNet Gluon model zoo's own resnet50_v2 (random initialisation, nothing
downloaded), as a Gluon "port" to check against our reference in its Gluon layout:

    python -m parity resnet50v2 --option layout=gluon --port examples.gluon_resnet50v2:build --port-backend mxnet
"""

from mxnet.gluon.model_zoo import vision


def build():
    return vision.resnet50_v2(pretrained=False)
