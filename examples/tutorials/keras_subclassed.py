"""A Keras model made of subclassed blocks, as Keras guides write them."""

import keras
from keras import layers


class ConvBlock(layers.Layer):
    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn = layers.BatchNormalization()
        self.relu = layers.ReLU()

    def call(self, x, training=False):
        return self.relu(self.bn(self.conv(x), training=training))


class ResidualBlock(layers.Layer):
    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.block1 = ConvBlock(filters)
        self.conv = layers.Conv2D(filters, 3, padding="same")

    def call(self, x, training=False):
        return x + self.conv(self.block1(x, training=training))


def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(24, 24, 3))
    x = ConvBlock(16)(inputs)
    x = ResidualBlock(16)(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    randomise_statistics([model.layers[1].bn, model.layers[2].block1.bn])
    return model


def randomise_statistics(batchnorms):
    """Non-trivial BatchNorm moving statistics, as a trained model has."""
    for bn in batchnorms:
        shape = bn.moving_mean.shape
        bn.moving_mean.assign(keras.random.uniform(shape, -0.5, 0.5))
        bn.moving_variance.assign(keras.random.uniform(shape, 0.5, 1.5))
