"""A Keras port with a free spatial input (keras.Input(shape=(None, None, C))):
TensorFlow's 'same' padding depends on the input size where the stride is not 1,
so the reader works it out for the run's input; the generated Keras ResNet-18
(free size) passes the port check."""

import numpy as np
import pytest

from parity.cli import main as parity_main
from refnets.__main__ import main as refnets_main
from refnets.native import PortModelError

from conftest import INSTALLED

pytestmark = pytest.mark.skipif("keras" not in INSTALLED, reason="keras is not installed")


def _free_model():
    import keras

    x = keras.Input(shape=(None, None, 3))
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", name="keep")(y)
    return keras.Model(x, y)


@pytest.mark.parametrize("size,down", [(9, (1, 1, 1, 1)), (8, (0, 1, 0, 1)), (7, (1, 1, 1, 1))])
def test_same_padding_of_a_free_size_port_follows_the_input(size, down):
    from refnets.backends.keras import read

    found = {layer.name: layer.config["padding"] for layer in
             read.layers(_free_model(), np.zeros((1, 3, size, size), np.float32))}
    assert found == {"down": down, "keep": (1, 1, 1, 1)}


def test_without_an_input_a_free_size_strided_same_conv_is_named():
    from refnets.backends.keras import read

    with pytest.raises(PortModelError, match="'down' pads 'same' with stride 2 on an input of free size"):
        read.layers(_free_model())


def test_a_generated_free_size_keras_model_passes_the_port_check(tmp_path, capsys):
    out = tmp_path / "resnet18_keras.py"
    assert refnets_main(["code", "resnet18", "--framework", "keras", "--out", str(out)]) == 0
    assert "input_size=(None, None)" in out.read_text() and 'padding="same"' in out.read_text()
    args = ["resnet18", "--input-shape", "3,32,32", "--port", f"{out}:build", "--port-backend", "keras"]
    assert parity_main(args) == 0
    assert "PORT MATCHES THE REFERENCE" in capsys.readouterr().out
