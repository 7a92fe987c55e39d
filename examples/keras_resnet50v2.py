"""keras.applications' own ResNet50V2 (random initialisation, nothing downloaded),
as a Keras "port" to check against our reference:

    python -m parity resnet50v2 --port examples.keras_resnet50v2:build --port-backend keras
"""

import keras


def build(input_shape=(224, 224, 3)):
    # logits, as the reference: no final softmax
    return keras.applications.ResNet50V2(weights=None, input_shape=input_shape, classifier_activation=None)
