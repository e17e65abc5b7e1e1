"""CIFAR-10 from the python pickle batches (``cifar-10-batches-py``), read without torchvision
so that corrupt or truncated files fail with a message naming the file; torchvision only
downloads it."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np

CIFAR10_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch: images uint8 (n, 32, 32, 3) and labels int64 (n,)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, AttributeError, TypeError, ValueError) as err:
        raise ValueError(f"corrupt or truncated CIFAR-10 file {path}: {type(err).__name__}: {err}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise ValueError(
            f"corrupt CIFAR-10 file {path}: expected data (n, 3072) and n labels, "
            f"got data {data.shape} and labels {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"corrupt CIFAR-10 file {path}: labels outside 0..9")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (n, 32, 32, 3)
    return np.ascontiguousarray(images), labels


def load_cifar10(root: str | Path, *, train: bool = True, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 32, 32, 3) and labels int64 (N,) from ``root/cifar-10-batches-py``.

    With ``download`` torchvision fetches the archive (170 MB) into ``root`` when it is missing.
    """
    folder = Path(root) / CIFAR10_FOLDER
    files = TRAIN_FILES if train else TEST_FILES
    missing = [name for name in files if not (folder / name).is_file()]
    if missing and download:
        from torchvision.datasets import CIFAR10

        try:
            CIFAR10(str(root), train=train, download=True)
        except (URLError, ConnectionError, TimeoutError) as err:  # HTTPError is a URLError
            raise FileNotFoundError(
                f"could not download CIFAR-10 from {CIFAR10.url} ({getattr(err, 'reason', err)}); "
                f"put a copy of {CIFAR10_FOLDER} in {root} (or point data.root at it) and set data.download false"
            ) from None
        missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 not found: expected {', '.join(missing)} in {folder}; "
            f"set data.download true (--data.download true) to fetch it, "
            f"or data.root to the folder holding {CIFAR10_FOLDER}"
        )
    parts = [read_cifar_batch(folder / name) for name in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
