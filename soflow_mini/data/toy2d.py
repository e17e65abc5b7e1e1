"""2D toy distributions with labels (mode or component id), deterministic given a Generator."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

Sampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]


def _uniform(n: int, g: torch.Generator) -> Tensor:
    return torch.rand(n, generator=g)


def checkerboard(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Uniform on the 8 dark squares of a 4x4 board over [-2, 2]^2; label = square id."""
    cell = torch.randint(0, 8, (n,), generator=g)
    row = cell // 2  # 0..3
    col = 2 * (cell % 2) + (row % 2)  # dark squares alternate with the row
    x = torch.stack([col + _uniform(n, g), row + _uniform(n, g)], dim=1) - 2.0
    return x, cell


def eight_gaussians(n: int, g: torch.Generator, radius: float = 2.0, std: float = 0.15) -> tuple[Tensor, Tensor]:
    """Eight Gaussians on a circle of radius 2; label = component."""
    k = torch.randint(0, 8, (n,), generator=g)
    angle = k.float() * (2 * math.pi / 8)
    centers = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centers + std * torch.randn(n, 2, generator=g), k


def two_moons(n: int, g: torch.Generator, noise: float = 0.08) -> tuple[Tensor, Tensor]:
    """Two interleaved half circles, centred and scaled to about unit spread; label = moon."""
    k = torch.randint(0, 2, (n,), generator=g)
    angle = math.pi * _uniform(n, g)
    upper = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    lower = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)
    x = torch.where(k[:, None] == 0, upper, lower) + noise * torch.randn(n, 2, generator=g)
    return 1.5 * (x - torch.tensor([0.5, 0.25])), k


def spirals(n: int, g: torch.Generator, noise: float = 0.05) -> tuple[Tensor, Tensor]:
    """Two interleaved spiral arms; label = arm."""
    k = torch.randint(0, 2, (n,), generator=g)
    r = _uniform(n, g).sqrt()
    angle = 3 * math.pi * r + math.pi * k.float()
    x = 2.2 * r[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return x + noise * torch.randn(n, 2, generator=g), k


def rings(n: int, g: torch.Generator, noise: float = 0.06) -> tuple[Tensor, Tensor]:
    """Three concentric circles of radii 0.6, 1.3, 2.0 with mass proportional to length; label = ring."""
    radii = torch.tensor([0.6, 1.3, 2.0])
    k = torch.multinomial(radii / radii.sum(), n, replacement=True, generator=g)
    angle = 2 * math.pi * _uniform(n, g)
    x = radii[k][:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return x + noise * torch.randn(n, 2, generator=g), k


TOY_DATASETS: dict[str, tuple[Sampler, int]] = {
    "checkerboard": (checkerboard, 8),
    "8gaussians": (eight_gaussians, 8),
    "moons": (two_moons, 2),
    "spirals": (spirals, 2),
    "rings": (rings, 3),
}


def toy_num_classes(name: str) -> int:
    """Number of labels of a toy dataset (its components: squares, modes, moons, arms, rings)."""
    return TOY_DATASETS[_resolve(name)][1]


def sample_toy(name: str, n: int, *, seed: int | None = None, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Draw n points of a named toy: returns x (n, 2) float32 and labels (n,) int64.

    Pass ``seed`` or a CPU ``generator``; the same seed always gives the same points.
    """
    sampler = TOY_DATASETS[_resolve(name)][0]
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    elif seed is not None:
        raise ValueError("pass either seed or generator, not both")
    return sampler(n, generator)


def _resolve(name: str) -> str:
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {list(TOY_DATASETS)}")
    return name
