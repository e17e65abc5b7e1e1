"""Noising paths x_t = alpha(t) x0 + beta(t) x1.

Convention used across soflow_mini: t = 0 is data (x0), t = 1 is noise (x1 ~ N(0, I)).
The conditional velocity of a path is v_t = alpha'(t) x0 + beta'(t) x1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from . import _checks

NoisingType = Literal["linear", "trig"]


def expand_like(t: Tensor, x: Tensor) -> Tensor:
    """View a per-sample (B,) tensor as (B, 1, ..., 1) so it broadcasts against x (B, ...)."""
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


@dataclass(frozen=True)
class NoisingPath:
    """A path with coefficients alpha(t), beta(t) and their time derivatives."""

    name: NoisingType

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - t if self.name == "linear" else torch.cos(0.5 * math.pi * t)

    def beta(self, t: Tensor) -> Tensor:
        return t if self.name == "linear" else torch.sin(0.5 * math.pi * t)

    def d_alpha(self, t: Tensor) -> Tensor:
        if self.name == "linear":
            return torch.full_like(t, -1.0)
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def d_beta(self, t: Tensor) -> Tensor:
        if self.name == "linear":
            return torch.ones_like(t)
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def interpolate(self, x0: Tensor, noise: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Return (x_t, v_t) for data x0 (B, ...), noise (B, ...) and times t (B,)."""
        tb = expand_like(t, x0)
        x_t = self.alpha(tb) * x0 + self.beta(tb) * noise  # (B, ...)
        v_t = self.d_alpha(tb) * x0 + self.d_beta(tb) * noise  # (B, ...)
        return x_t, v_t


PATHS: dict[str, NoisingPath] = {name: NoisingPath(name) for name in ("linear", "trig")}


def get_path(name: str) -> NoisingPath:
    """Look up a noising path by name ("linear" or "trig", any case)."""
    return PATHS[_checks.choice("noising_type", name, PATHS)]
