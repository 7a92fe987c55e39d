"""Small Keras models written as Keras tutorials write them, the subjects of the
Keras tracer's tests (test_keras_trace.py). Nothing here imports refnets."""

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402
from keras import layers  # noqa: E402


def bottleneck_model():
    """A ResNet-style stem and one bottleneck block with a projection shortcut."""
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Conv2D(64, 7, strides=2, padding="same", name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)

    shortcut = layers.Conv2D(32, 1, name="shortcut_conv")(x)
    shortcut = layers.BatchNormalization(name="shortcut_bn")(shortcut)

    y = layers.Conv2D(16, 1, name="conv1")(x)
    y = layers.BatchNormalization(name="bn1")(y)
    y = layers.Activation("relu", name="relu1")(y)
    y = layers.Conv2D(16, 3, padding="same", name="conv2")(y)
    y = layers.BatchNormalization(name="bn2")(y)
    y = layers.Activation("relu", name="relu2")(y)
    y = layers.Conv2D(32, 1, name="conv3")(y)
    y = layers.BatchNormalization(name="bn3")(y)

    x = layers.add([y, shortcut], name="add")
    outputs = layers.Activation("relu", name="out")(x)
    return keras.Model(inputs, outputs, name="bottleneck")


class ConvBlock(layers.Layer):
    """Conv2D -> BatchNormalization -> ReLU."""

    def __init__(self, filters, kernel_size=3, activation=True, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False)
        self.bn = layers.BatchNormalization()
        self.relu = layers.ReLU() if activation else None

    def call(self, x, training=None):
        x = self.bn(self.conv(x), training=training)
        return self.relu(x) if self.relu is not None else x


class ResidualBlock(layers.Layer):
    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv_a = ConvBlock(filters)
        self.conv_b = ConvBlock(filters, activation=False)

    def call(self, x, training=None):
        shortcut = x
        x = self.conv_a(x, training=training)
        x = self.conv_b(x, training=training)
        return keras.ops.relu(x + shortcut)


def residual_blocks_model():
    inputs = keras.Input(shape=(16, 16, 3))
    x = ConvBlock(8, name="stem")(inputs)
    x = ResidualBlock(8, name="block")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10)(x)
    return keras.Model(inputs, outputs)


def tutorial_cnn():
    """The Keras MNIST convnet example, sized down."""
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(16, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])


def shared_conv_model():
    """One Conv2D applied to two branches (shared weights), then concatenated."""
    inputs = keras.Input(shape=(12, 12, 3))
    shared = layers.Conv2D(6, 3, padding="same", name="shared_conv")
    pooled = layers.AveragePooling2D(pool_size=3, strides=1, padding="same", name="pool")(inputs)
    a = shared(pooled)
    b = shared(inputs)
    x = layers.Concatenate(name="concat")([a, b])
    x = layers.Conv2D(4, 1, activation="relu", name="mix")(x)
    return keras.Model(inputs, x)


def nested_cnn():
    """A feature extractor model used as a layer of a classifier; valid padding only."""
    inputs = keras.Input(shape=(20, 20, 3))
    x = layers.Conv2D(8, 3, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise")(x)
    x = layers.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(x)
    x = layers.AveragePooling2D(2, name="avg")(x)
    features = keras.Model(inputs, x, name="features")

    image = keras.Input(shape=(20, 20, 3))
    y = features(image)
    y = layers.Flatten(name="flatten")(y)
    y = layers.Dropout(0.5, name="dropout")(y)
    y = layers.Dense(32, activation="tanh", name="hidden")(y)
    outputs = layers.Dense(5, name="logits")(y)
    return keras.Model(image, outputs, name="classifier")


class SmallNet(keras.Model):
    """Model subclassing: layers made in __init__, wired in call."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.stem = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")
        self.blocks = [ConvBlock(8), ConvBlock(8)]
        self.squeeze = layers.GlobalAveragePooling2D(keepdims=True)
        self.head = layers.Conv2D(num_classes, 1)
        self.flatten = layers.Flatten()

    def call(self, x, training=False):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, training=training)
        return self.flatten(self.head(self.squeeze(x)))


def subclassed_model():
    model = SmallNet()
    model(np.zeros((1, 16, 16, 3), dtype=keras.config.floatx()))  # creates the variables
    return model


def any_size_model():
    """A functional model for images of any size."""
    inputs = keras.Input(shape=(None, None, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="sigmoid")(inputs)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


class Gate(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(8, 1)

    def call(self, x):
        return keras.ops.sigmoid(self.conv(keras.activations.relu(x)))


def two_tower_model():
    """Two flattened towers, one batch-normalised, concatenated before the classifier."""
    inputs = keras.Input(shape=(6, 5, 3))
    a = layers.Conv2D(4, 3, name="tower_a")(inputs)
    a = layers.Flatten(name="flatten_a")(a)
    a = layers.BatchNormalization(name="bn_a")(a)
    b = layers.MaxPooling2D(2, name="tower_b")(inputs)
    b = layers.Flatten(name="flatten_b")(b)
    x = layers.Concatenate(name="features")([a, b])
    x = layers.Activation("tanh")(x)
    outputs = layers.Dense(7, name="classifier")(x)
    return keras.Model(inputs, outputs)
