"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (idx gz files)."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack_from(">HBB", data, 0)
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    dims = struct.unpack_from(">" + "I" * ndim, data, 4)
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_fashion_mnist(folder: str = FASHION_MNIST_DIR):
    """Returns (x_train, y_train, x_test, y_test) as uint8 arrays (images 28x28)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"{folder} not found: install it with `apt-get install dataset-fashion-mnist`")
    get = lambda n: _read_idx(os.path.join(folder, n))  # noqa: E731
    return (get("train-images-idx3-ubyte.gz"), get("train-labels-idx1-ubyte.gz"),
            get("t10k-images-idx3-ubyte.gz"), get("t10k-labels-idx1-ubyte.gz"))
