"""An offline metric for the digits preset: k-nearest-neighbour precision and recall
(Kynkaanniemi et al. 2019) of 8x8 samples against scikit-learn's digits, in pixel space.

Each point gets a ball reaching its k-th nearest neighbour within its own set. Precision is
the share of samples inside some data ball (samples look like digits); recall the share of
data inside some sample ball (the samples cover the digits). The same two numbers between
two halves of the data set are the ceiling a perfect model of that size reaches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..metrics import precision_recall


def _flat(images: np.ndarray) -> Tensor:
    """uint8 images (N, 8, 8, 1) -> float64 (N, 64) in [0, 1]."""
    return torch.as_tensor(np.asarray(images), dtype=torch.float64).flatten(1) / 255.0


def evaluate_digits(images: np.ndarray, *, k: int = 3, seed: int = 0) -> dict[str, float | int]:
    """Precision and recall of uint8 samples (N, 8, 8, 1) against the 1,797 digits, with the
    ceiling measured between two random halves of the data."""
    from ..data.digits import DIGITS_SHAPE, load_digits_images

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != DIGITS_SHAPE:
        raise ValueError(f"digits samples must be uint8 (N, 8, 8, 1), got {images.dtype} {images.shape}")
    real = _flat(load_digits_images()[0])
    precision, recall = precision_recall(_flat(images), real, k)
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    half = len(real) // 2
    ceiling = precision_recall(real[order[:half]], real[order[half:]], k)
    return {"num_samples": int(images.shape[0]), "precision": precision, "recall": recall,
            "precision_data": ceiling[0], "recall_data": ceiling[1], "k": k}
