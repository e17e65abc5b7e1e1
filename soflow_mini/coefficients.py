"""Solution-function parameterizations f(x_t, t, s) = a(t, s) x_t + b(t, s) F(x_t, t, s).

Both families satisfy a(t, t) = 1 and b(t, t) = 0, so f(x, t, t) = x holds for any
network F. The model velocity is the s-derivative at s = t:
v(x_t, t) = d_s a(t, t) x_t + d_s b(t, t) F(x_t, t, t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from . import _checks

CoefficientType = Literal["euler", "trig"]


@dataclass(frozen=True)
class SolutionCoefficients:
    """a(t, s), b(t, s) and their s-derivatives at s = t."""

    name: CoefficientType

    def a(self, t: Tensor, s: Tensor) -> Tensor:
        return torch.ones_like(t) if self.name == "euler" else torch.cos(0.5 * math.pi * (s - t))

    def b(self, t: Tensor, s: Tensor) -> Tensor:
        return s - t if self.name == "euler" else torch.sin(0.5 * math.pi * (s - t))

    @property
    def ds_a(self) -> float:
        """d/ds a(t, s) at s = t (0 for both families)."""
        return 0.0

    @property
    def ds_b(self) -> float:
        """d/ds b(t, s) at s = t (1 for euler, pi / 2 for trig)."""
        return 1.0 if self.name == "euler" else 0.5 * math.pi


COEFFICIENTS: dict[str, SolutionCoefficients] = {
    name: SolutionCoefficients(name) for name in ("euler", "trig")
}


def get_coefficients(name: str) -> SolutionCoefficients:
    """Look up a parameterization by name ("euler" or "trig", any case)."""
    return COEFFICIENTS[_checks.choice("coefficient_type", name, COEFFICIENTS)]
