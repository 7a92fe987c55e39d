"""--fit's data readers (IDX, CIFAR-10 batches, digits) on small files written here,
and every bad --data argument answered with exit 2 naming what is wrong."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from parity import cli
from parity.choose import data

pytest.importorskip("sklearn")


def write_idx(path, array, type_code=0x08, magic=None):
    head = magic if magic is not None else bytes([0, 0, type_code, array.ndim])
    blob = head + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(">u1").tobytes()
    with (gzip.open(path, "wb") if path.endswith(".gz") else open(path, "wb")) as handle:
        handle.write(blob)


def mnist_dir(tmp_path, n=12, gz=False):
    rng = np.random.default_rng(0)
    images = {part: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for part in ("train", "test")}
    labels = {part: rng.integers(0, 10, n, dtype=np.uint8) for part in ("train", "test")}
    for part, (image_name, label_name) in data.IDX_FILES.items():
        write_idx(str(tmp_path / (image_name + (".gz" if gz else ""))), images[part])
        write_idx(str(tmp_path / label_name), labels[part])
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_are_read_back_exactly(tmp_path, gz):
    images, labels = mnist_dir(tmp_path, gz=gz)
    train_x, train_y = data.load_idx_pair(str(tmp_path), "train")
    assert train_x.shape == (12, 1, 28, 28)
    np.testing.assert_array_equal(train_x[:, 0], images["train"] / np.float32(255))
    np.testing.assert_array_equal(train_y, labels["train"])
    loaded = data.load(f"fashion-mnist:{tmp_path}", (1, 28, 28), limit=5)
    assert loaded.x_train.shape == (5, 1, 28, 28) and loaded.x_test.shape == (5, 1, 28, 28)
    assert abs(float(loaded.x_train.mean())) < 1e-5  # standardised with the training set's statistics


def test_idx_reader_refuses_wrong_magic_and_truncated_data(tmp_path):
    path = str(tmp_path / "bad")
    write_idx(path, np.zeros((2, 3), np.uint8), magic=b"\x01\x02\x08\x02")
    with pytest.raises(data.DataError, match="wrong magic"):
        data.read_idx(path)
    write_idx(path, np.zeros((2, 3), np.uint8))
    with open(path, "ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(data.DataError, match="needs 6 bytes of data, the file holds 7"):
        data.read_idx(path)


def write_cifar(root, n=4, evil=False):
    rng = np.random.default_rng(1)
    batches = {}
    for name in data.CIFAR_TRAIN + (data.CIFAR_TEST,):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        batches[name] = batch
        with open(os.path.join(root, name), "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    if evil:
        class Evil:
            def __reduce__(self):
                return (os.system, ("touch " + os.path.join(root, "pwned"),))
        with open(os.path.join(root, data.CIFAR_TEST), "wb") as handle:
            pickle.dump({b"data": Evil()}, handle)
    return batches


def test_cifar_batches_are_read_and_fitted_to_a_grey_model(tmp_path):
    batches = write_cifar(str(tmp_path))
    x, y = data.read_cifar_batch(str(tmp_path / "data_batch_2"))
    np.testing.assert_array_equal(x.reshape(4, -1), batches["data_batch_2"][b"data"] / np.float32(255))
    np.testing.assert_array_equal(y, batches["data_batch_2"][b"labels"])
    loaded = data.load(f"cifar10:{tmp_path}", (1, 28, 28))
    assert loaded.x_train.shape == (20, 1, 28, 28) and loaded.x_test.shape == (4, 1, 28, 28)
    assert "resized" in loaded.how


def test_cifar_reader_runs_no_code_from_a_pickle(tmp_path):
    write_cifar(str(tmp_path), evil=True)
    with pytest.raises(data.DataError, match="test_batch: not a CIFAR-10 python batch: refusing the global"):
        data.load(f"cifar10:{tmp_path}", (3, 32, 32))
    assert not (tmp_path / "pwned").exists()


def test_digits_resized_to_the_model_input():
    loaded = data.load("digits", (3, 28, 28))
    assert loaded.x_train.shape == (1438, 3, 28, 28) and loaded.x_test.shape == (359, 3, 28, 28)
    assert loaded.num_classes == 10 and set(np.unique(loaded.y_test)) == set(range(10))
    constant = data.resize_bilinear(np.full((1, 1, 8, 8), 0.5, np.float32), 28, 28)
    np.testing.assert_allclose(constant, 0.5)


def bad_data_cases(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "magic").mkdir()
    mnist_dir(tmp_path / "magic")
    write_idx(str(tmp_path / "magic" / "train-labels-idx1-ubyte"), np.zeros(12, np.uint8), magic=b"\x08\x08\x08\x01")
    (tmp_path / "short").mkdir()
    mnist_dir(tmp_path / "short")
    with open(tmp_path / "short" / "t10k-images-idx3-ubyte", "r+b") as handle:
        handle.truncate(100)
    (tmp_path / "cifar").mkdir()
    write_cifar(str(tmp_path / "cifar"))
    os.remove(tmp_path / "cifar" / "data_batch_3")
    return [("nope", "unknown data set 'nope'"), ("mnist", "say where the files are"),
            (f"mnist:{tmp_path / 'missing'}", "is not a directory"), ("digits:x", "takes no directory"),
            (f"mnist:{tmp_path / 'empty'}", "train-images-idx3-ubyte (or .gz): no such file"),
            (f"mnist:{tmp_path / 'magic'}", "train-labels-idx1-ubyte: not an IDX file"),
            (f"fashion-mnist:{tmp_path / 'short'}", "t10k-images-idx3-ubyte: malformed IDX file"),
            (f"cifar10:{tmp_path / 'cifar'}", "data_batch_3: no such file")]


def test_every_bad_data_argument_exits_2_naming_it(tmp_path, capsys):
    for argument, message in bad_data_cases(tmp_path):
        assert cli.main(["lenet", "--fit", "--data", argument, "--quiet"]) == 2, argument
        err = capsys.readouterr().err
        assert message in err, (argument, err)
