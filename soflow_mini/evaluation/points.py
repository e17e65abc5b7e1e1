"""Sample quality of 2D toy samples: soflow_mini.metrics against fresh data, with the floor
that two independent data samples of the same size reach."""

from __future__ import annotations

import numpy as np
import torch

from ..data import sample_toy
from ..metrics import data_floor, sample_quality


def evaluate_points(points: np.ndarray | torch.Tensor, toy: str, *, seed: int = 12345) -> dict[str, float | int]:
    """Energy distance and sliced W2 of points (N, 2) against N fresh points of ``toy``."""
    points = torch.as_tensor(np.asarray(points), dtype=torch.float32)
    if points.dim() != 2 or points.shape[1] != 2 or points.shape[0] < 2:
        raise ValueError(f"points must be an (N, 2) array with N >= 2, got shape {tuple(points.shape)}")
    bad = int((~torch.isfinite(points)).any(1).sum())
    if bad:
        raise ValueError(f"{bad} of {points.shape[0]} points are NaN or infinite (did training diverge?)")
    reference, _ = sample_toy(toy, points.shape[0], seed=seed)
    quality = sample_quality(points, reference)
    floor = data_floor(lambda n, s: sample_toy(toy, n, seed=s)[0], points.shape[0])
    return {"num_samples": int(points.shape[0]), "energy": quality.energy, "sliced_w2": quality.sliced_w2,
            "energy_floor": floor.energy, "sliced_w2_floor": floor.sliced_w2}
