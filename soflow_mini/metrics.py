"""Sample-quality metrics for low-dimensional samples: energy distance and sliced W2.

Both compare a sample with held-out data. The energy-distance estimator is unbiased: a model
whose samples follow the data distribution reads about 0, above or below, so its reference
level is a noise band, the spread of the data-vs-data value over independent draws at the same
sample size (``noise_band``). Sliced W2 of finite samples is biased upward; its data-vs-data
value (``data_floor``) is a floor that no model beats on average.
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
    """Metrics between two independent data samples of size n; ``draw(n, seed)`` returns (n, D).

    One draw of the data-vs-data value: a floor for sliced W2, but for the unbiased energy
    distance only one point of its noise band (see ``noise_band``), not a lower bound.
    """
    return sample_quality(draw(n, seeds[0]), draw(n, seeds[1]))


@dataclass(frozen=True)
class NoiseBand:
    """Data-vs-data values of both metrics at sample size ``n``: mean and sample standard
    deviation over ``draws`` independent pairs of data samples."""

    n: int
    draws: int
    energy_mean: float
    energy_std: float
    sliced_w2_mean: float
    sliced_w2_std: float

    def energy_interval(self, k: float = 2.0) -> tuple[float, float]:
        """(mean - k std, mean + k std) of the data-vs-data energy distance."""
        return self.energy_mean - k * self.energy_std, self.energy_mean + k * self.energy_std

    def sliced_w2_interval(self, k: float = 2.0) -> tuple[float, float]:
        """(mean - k std, mean + k std) of the data-vs-data sliced W2."""
        return self.sliced_w2_mean - k * self.sliced_w2_std, self.sliced_w2_mean + k * self.sliced_w2_std


def noise_band(draw: Callable[[int, int], Tensor], n: int, *, draws: int = 10, seed: int = 1000) -> NoiseBand:
    """Both metrics between ``draws`` independent pairs of data samples of size n.

    ``draw(n, seed)`` returns (n, D); pair k uses seeds seed + 2k and seed + 2k + 1. A model's
    energy distance inside ``energy_interval()`` cannot be told apart from a data sample's.
    """
    if not isinstance(draws, int) or draws < 2:
        raise ValueError(f"draws must be an integer >= 2, got {draws!r}")
    values = torch.tensor(
        [[*vars(sample_quality(draw(n, seed + 2 * k), draw(n, seed + 2 * k + 1))).values()] for k in range(draws)],
        dtype=torch.float64,
    )  # (draws, 2): energy, sliced W2
    mean, std = values.mean(0), values.std(0)
    return NoiseBand(n, draws, float(mean[0]), float(std[0]), float(mean[1]), float(std[1]))


def _kth_neighbour_distance(x: Tensor, k: int, chunk: int) -> Tensor:
    """Distance of each row of x (N, D) to its k-th nearest other row: (N,)."""
    return torch.cat([torch.cdist(x[i:i + chunk], x).kthvalue(k + 1, dim=1).values  # + 1: the point itself
                      for i in range(0, x.shape[0], chunk)])


def precision_recall(fake: Tensor, real: Tensor, k: int = 3, *, chunk: int = 2048) -> tuple[float, float]:
    """k-nearest-neighbour precision and recall (Kynkaanniemi et al. 2019) of fake (N, D)
    against real (M, D).

    Each point gets a ball reaching its k-th nearest neighbour within its own set. Precision
    is the share of fake points inside some real ball (no samples where the data has none, a
    local measure the energy distance misses); recall the share of real points inside some
    fake ball (the data is covered). Two samples of the data read about equal values below 1.
    """
    _check_samples(fake, real)
    if min(len(fake), len(real)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples, got {len(fake)} and {len(real)}")
    fake, real = fake.double(), real.double()
    real_radii, fake_radii = _kth_neighbour_distance(real, k, chunk), _kth_neighbour_distance(fake, k, chunk)
    covered_real = torch.zeros(len(real), dtype=torch.bool)
    inside = []
    for i in range(0, len(fake), chunk):
        d = torch.cdist(fake[i:i + chunk], real)  # (chunk, M)
        inside.append((d <= real_radii[None, :]).any(1))
        covered_real |= (d <= fake_radii[i:i + chunk, None]).any(0)
    return float(torch.cat(inside).double().mean()), float(covered_real.double().mean())


def straightness(trajectory: Tensor) -> float:
    """Straightness of sampled paths (Liu et al. 2023): the mean over time of
    ``E |(z_end - z_start) - dz/dt|^2``, with time rescaled to [0, 1].

    ``trajectory`` (K + 1, N, ...) holds N paths at K + 1 equally spaced times (for example
    ``FlowMatching.trajectory``); dz/dt is the finite difference of each step, times K. Zero
    for paths that are straight lines travelled at constant speed, larger the more they bend.
    """
    if not isinstance(trajectory, Tensor) or trajectory.dim() < 3 or trajectory.shape[0] < 2:
        shape = tuple(trajectory.shape) if isinstance(trajectory, Tensor) else type(trajectory).__name__
        raise ValueError(f"trajectory must be a tensor of shape (K + 1, N, ...) with K >= 1, got {shape}")
    z = trajectory.double().flatten(2)  # (K + 1, N, D)
    chord = z[-1] - z[0]  # (N, D)
    velocity = (z[1:] - z[:-1]) * (z.shape[0] - 1)  # (K, N, D)
    return float(((chord - velocity) ** 2).sum(-1).mean())
