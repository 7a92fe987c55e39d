"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

- resnet18v2, resnet34v2: basic blocks, stride in each stage's first block (as in
  v1); BN-ReLU before every conv; a 1x1 projection (no bias) from the
  pre-activated input where the shape changes; post BN-ReLU before the pool.
- resnet50v2, resnet101v2, resnet152v2: keras.applications' layout and names
  (conv2_block1_1_conv ...): stem 7x7/2 conv with bias, zero pad then 3x3/2 max
  pool; the stride sits in the *last* block of stages 2-4; the projection (with
  bias) only in each stage's first block, from the pre-activated input; a strided
  identity shortcut is a 1x1 max pool; bias only on each block's last 1x1 conv;
  BatchNorm eps 1.001e-5.

layout="gluon" (every depth): MXNet Gluon model zoo's resnet*_v2. An affine-free
BatchNorm on the input (`data_bn`: Gluon's `BatchNorm(scale=False, center=False)`),
then the layout above for 18/34 (layout="he"), and for 50/101/152 the same
pattern with bottlenecks: BN-ReLU, then 1x1 (no bias), BN-ReLU, 3x3 carrying the
stage's stride (in each stage's FIRST block), BN-ReLU, 1x1 (no bias); a 1x1
projection (no bias) from the pre-activated input where the shape changes; eps
1e-5; names in the "he" style (layer1.0.bn1, layer1.0.res.body.conv1, ...).
"""

from ..registry import register
from ..spec import Dense, GlobalAvgPool, Identity, ModelSpec, ZeroPad
from .layers import bn, conv, maxpool, positive, relu, seq
from .resnet import check_layout, residual

KERAS_EPS = 1.001e-5
BASIC_PLANS = {"resnet18v2": (2, 2, 2, 2), "resnet34v2": (3, 4, 6, 3)}
BOTTLENECK_PLANS = {"resnet50v2": (3, 4, 6, 3), "resnet101v2": (3, 4, 23, 3), "resnet152v2": (3, 8, 36, 3)}
WIDTHS = (64, 128, 256, 512)


def _options(in_channels, num_classes, use_residual, layout):
    return (("in_channels", in_channels), ("num_classes", num_classes), ("use_residual", use_residual),
            ("layout", layout))


def _head(eps: float, num_classes: int, post_names=("post_bn", "post_relu"), fc="fc"):
    return [bn(post_names[0], eps), relu(post_names[1]), GlobalAvgPool(name="avg_pool"),
            Dense(name=fc, out_features=positive("num_classes", num_classes))]


# ------------------------------------- "he" / gluon pre-activation (18, 34; gluon 50+)


def _preact_block(index: int, in_ch: int, out_ch: int, stride: int, body, use_residual: bool):
    """BN-ReLU, then `body`; the shortcut is the block's input, or a 1x1 projection
    (no bias) from the pre-activated input where the shape changes."""
    preact = [bn("bn1"), relu("relu1")]
    if stride != 1 or in_ch != out_ch:
        shortcut = conv("downsample", out_ch, 1, stride, bias=False)
        return seq(str(index), *preact, residual("res", seq("body", *body), shortcut, use_residual))
    return seq(str(index), residual("res", seq("body", *preact, *body), Identity(name="shortcut"), use_residual))


def _basic_body(width: int, stride: int):
    return [conv("conv1", width, 3, stride, 1, bias=False), bn("bn2"), relu("relu2"),
            conv("conv2", width, 3, 1, 1, bias=False)]


def _bottleneck_body(width: int, stride: int):
    return [conv("conv1", width, 1, bias=False), bn("bn2"), relu("relu2"),
            conv("conv2", width, 3, stride, 1, bias=False), bn("bn3"), relu("relu3"),
            conv("conv3", 4 * width, 1, bias=False)]


def resnet_v2_he(name: str, in_channels: int, num_classes: int, use_residual: bool, layout: str) -> ModelSpec:
    """layout "he" (18, 34) or "gluon" (every depth: an affine-free input BatchNorm first)."""
    bottleneck = name in BOTTLENECK_PLANS
    depths = BOTTLENECK_PLANS[name] if bottleneck else BASIC_PLANS[name]
    layers = [bn("data_bn", affine=False)] if layout == "gluon" else []
    layers += [conv("conv1", 64, 7, 2, 3, bias=False), bn("bn1"), relu("relu"), maxpool("maxpool", 3, 2, 1)]
    channels = 64
    for stage, (width, depth) in enumerate(zip(WIDTHS, depths), start=1):
        out_ch = 4 * width if bottleneck else width
        blocks = []
        for i in range(depth):
            stride = 2 if (i == 0 and stage > 1) else 1
            body = (_bottleneck_body if bottleneck else _basic_body)(width, stride)
            blocks.append(_preact_block(i, channels, out_ch, stride, body, use_residual))
            channels = out_ch
        layers.append(seq(f"layer{stage}", *blocks))
    layers += _head(1e-5, num_classes)
    return ModelSpec(name=name, root=seq("", *layers), input_shape=(positive("in_channels", in_channels), 224, 224),
                     options=_options(in_channels, num_classes, use_residual, layout))


# ------------------------------------------------- bottleneck, keras layout (50+)


def _keras_block(index: int, filters: int, stride: int, conv_shortcut: bool, use_residual: bool):
    preact = [bn("preact_bn", KERAS_EPS), relu("preact_relu")]
    body = [conv("1_conv", filters, 1, bias=False), bn("1_bn", KERAS_EPS), relu("1_relu"),
            conv("2_conv", filters, 3, stride, 1, bias=False), bn("2_bn", KERAS_EPS), relu("2_relu"),
            conv("3_conv", 4 * filters, 1)]
    name = f"block{index}"
    if conv_shortcut:
        shortcut = conv("0_conv", 4 * filters, 1, stride)
        return seq(name, *preact, residual("res", seq("body", *body), shortcut, use_residual))
    shortcut = maxpool("0_pool", 1, stride) if stride > 1 else Identity(name="shortcut")
    return seq(name, residual("res", seq("body", *preact, *body), shortcut, use_residual))


def _keras_stack(stage: int, filters: int, blocks: int, stride: int, use_residual: bool):
    layers = [_keras_block(1, filters, 1, True, use_residual)]
    layers += [_keras_block(i, filters, 1, False, use_residual) for i in range(2, blocks)]
    layers.append(_keras_block(blocks, filters, stride, False, use_residual))
    return seq(f"conv{stage}", *layers)


def resnet_v2_keras(name: str, in_channels: int, num_classes: int, use_residual: bool, layout: str) -> ModelSpec:
    layers = [conv("conv1_conv", 64, 7, 2, 3), ZeroPad(name="pool1_pad", padding=(1, 1, 1, 1)),
              maxpool("pool1_pool", 3, 2)]
    for stage, (width, depth) in enumerate(zip(WIDTHS, BOTTLENECK_PLANS[name]), start=2):
        stride = 1 if stage == 5 else 2
        layers.append(_keras_stack(stage, width, depth, stride, use_residual))
    layers += _head(KERAS_EPS, num_classes, fc="predictions")
    return ModelSpec(name=name, root=seq("", *layers), input_shape=(positive("in_channels", in_channels), 224, 224),
                     options=_options(in_channels, num_classes, use_residual, layout))


BASIC_LAYOUTS = ("he", "gluon")
BOTTLENECK_LAYOUTS = ("keras", "gluon")


def _register(name: str, layouts) -> None:
    @register(name)
    def build(in_channels: int = 3, num_classes: int = 1000, use_residual: bool = True,
              layout: str = layouts[0]) -> ModelSpec:
        check_layout(layout, layouts)
        fn = resnet_v2_keras if layout == "keras" else resnet_v2_he
        return fn(name, in_channels, num_classes, bool(use_residual), layout)


for _name in BASIC_PLANS:
    _register(_name, BASIC_LAYOUTS)
for _name in BOTTLENECK_PLANS:
    _register(_name, BOTTLENECK_LAYOUTS)
