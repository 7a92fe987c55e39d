"""LeNet-5 (as in Dive into Deep Learning) written by hand in Keras, channels-last,
with fused activations. Imports nothing from refnets. Check it with

    python -m parity lenet --port examples.keras_lenet:build --port-backend keras
"""

import keras
from keras import layers


def build(num_classes=10):
    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(6, 5, padding="same", activation="sigmoid", name="c1")(inputs)
    x = layers.AveragePooling2D(2, name="s2")(x)
    x = layers.Conv2D(16, 5, activation="sigmoid", name="c3")(x)
    x = layers.AveragePooling2D(2, name="s4")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, activation="sigmoid", name="f5")(x)
    x = layers.Dense(84, activation="sigmoid", name="f6")(x)
    outputs = layers.Dense(num_classes, name="out")(x)
    return keras.Model(inputs, outputs, name="lenet")
