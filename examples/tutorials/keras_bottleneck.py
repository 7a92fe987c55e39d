"""A Keras functional bottleneck block: padding='same', BatchNormalization at its default eps 1e-3."""

import keras
from keras import layers


def bottleneck(x, filters, stride=1):
    shortcut = layers.Conv2D(4 * filters, 1, strides=stride)(x)
    shortcut = layers.BatchNormalization()(shortcut)
    x = layers.Conv2D(filters, 1, strides=stride)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(filters, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(4 * filters, 1)(x)
    x = layers.BatchNormalization()(x)
    x = layers.add([x, shortcut])
    return layers.Activation("relu")(x)


def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Conv2D(16, 7, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = bottleneck(x, 8, stride=2)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    randomise_statistics([l for l in model.layers if isinstance(l, layers.BatchNormalization)])
    return model


def randomise_statistics(batchnorms):
    """Non-trivial BatchNorm moving statistics, as a trained model has."""
    for bn in batchnorms:
        shape = bn.moving_mean.shape
        bn.moving_mean.assign(keras.random.uniform(shape, -0.5, 0.5))
        bn.moving_variance.assign(keras.random.uniform(shape, 0.5, 1.5))
