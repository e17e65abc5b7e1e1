"""scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes): installs offline, so the
book can train an image model live on a CPU."""

from __future__ import annotations

import numpy as np

DIGITS_SHAPE = (8, 8, 1)


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """Return images uint8 (1797, 8, 8, 1) in [0, 255] (the 0..16 grey levels rescaled) and
    labels int64 (1797,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("the digits data set needs scikit-learn: pip install 'soflow-mini[digits]'") from err
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    return images, digits.target.astype(np.int64)
