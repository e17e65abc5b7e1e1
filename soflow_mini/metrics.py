"""Sample-quality metrics for low-dimensional samples: energy distance and sliced W2.

Both compare a sample with held-out data; ``data_floor`` gives the value the metric takes
between two independent data samples of the same size, the best a model can show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


def _check_samples(x: Tensor, y: Tensor) -> None:
    for name, z in (("x", x), ("y", y)):
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[0] < 2:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"{name} must be a tensor of shape (N, D) with N >= 2, got {shape}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension D, got {x.shape[1]} and {y.shape[1]}")


def _mean_distance(x: Tensor, y: Tensor, *, same: bool, chunk: int = 4096) -> Tensor:
    """Mean Euclidean distance over pairs (excluding i = j when x is y)."""
    total = x.new_zeros((), dtype=torch.float64)
    for i in range(0, x.shape[0], chunk):
        total += torch.cdist(x[i:i + chunk], y).double().sum()
    pairs = x.shape[0] * (y.shape[0] - 1) if same else x.shape[0] * y.shape[0]
    return total / pairs


def energy_distance(x: Tensor, y: Tensor) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| (unbiased within-sample terms); x (N, D), y (M, D)."""
    _check_samples(x, y)
    x, y = x.double(), y.double()
    value = 2 * _mean_distance(x, y, same=False) - _mean_distance(x, x, same=True) - _mean_distance(y, y, same=True)
    return float(value)


def sliced_wasserstein2(x: Tensor, y: Tensor, *, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance: sqrt of the mean over random unit directions of W2^2
    between the 1D projections. Unequal sample sizes are compared on a common quantile grid."""
    _check_samples(x, y)
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(x.shape[1], num_projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)  # (D, P)
    px = (dirs.T @ x.double().cpu().T).sort(dim=1).values  # (P, N)
    py = (dirs.T @ y.double().cpu().T).sort(dim=1).values  # (P, M)
    if px.shape[1] != py.shape[1]:
        n = min(px.shape[1], py.shape[1])
        levels = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        px, py = _quantiles(px, levels), _quantiles(py, levels)
    return float(((px - py) ** 2).mean().sqrt())


def _quantiles(sorted_values: Tensor, levels: Tensor) -> Tensor:
    """Linearly interpolated quantiles of rows sorted along dim 1; (P, N) -> (P, len(levels))."""
    n = sorted_values.shape[1]
    pos = levels * n - 0.5
    lo = pos.floor().clamp(0, n - 1).long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo).clamp(0, 1)
    return sorted_values[:, lo] * (1 - frac) + sorted_values[:, hi] * frac


@dataclass(frozen=True)
class SampleQuality:
    energy: float
    sliced_w2: float


def sample_quality(samples: Tensor, reference: Tensor) -> SampleQuality:
    """Both metrics of ``samples`` against held-out ``reference`` data."""
    return SampleQuality(energy_distance(samples, reference), sliced_wasserstein2(samples, reference))


def data_floor(draw: Callable[[int, int], Tensor], n: int, *, seeds: tuple[int, int] = (101, 202)) -> SampleQuality:
    """Metrics between two independent data samples of size n; ``draw(n, seed)`` returns (n, D)."""
    return sample_quality(draw(n, seeds[0]), draw(n, seeds[1]))
