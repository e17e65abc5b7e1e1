"""Training-time distributions: logit-normal times and the intermediate-time schedule r(k, K)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from . import _checks

LSchedule = Literal["const", "linear", "cosine", "exponent"]

MIN_GAP = 1e-4
"""Smallest separation kept between t and s, and between t and l."""


def logit_normal(
    n: int, mean: float, std: float, *, device=None, dtype=torch.float32, generator=None
) -> Tensor:
    """Draw n times sigmoid(N(mean, std^2)); shape (n,)."""
    z = torch.randn(n, device=device, dtype=dtype, generator=generator)
    return torch.sigmoid(mean + std * z)


def sample_consistency_times(
    n: int, mean: tuple[float, float], std: tuple[float, float], **kw
) -> tuple[Tensor, Tensor]:
    """Draw (t, s) with s < t: s_raw ~ LN(mean[0], std[0]), t_raw ~ LN(mean[1], std[1]).

    t = max(t_raw, 1e-4), s = min(s_raw, t - 1e-4); both (n,).
    """
    s_raw = logit_normal(n, mean[0], std[0], **kw)
    t_raw = logit_normal(n, mean[1], std[1], **kw)
    t = t_raw.clamp(min=MIN_GAP)
    s = torch.minimum(s_raw, t - MIN_GAP).clamp(min=0.0)
    return t, s


def _ratio_const(r_init: float, r_end: float, frac: float) -> float:
    return r_end


def _ratio_linear(r_init: float, r_end: float, frac: float) -> float:
    return r_init + (r_end - r_init) * frac


def _ratio_cosine(r_init: float, r_end: float, frac: float) -> float:
    return r_end + (r_init - r_end) * (1 + math.cos(math.pi * frac)) / 2


def _ratio_exponent(r_init: float, r_end: float, frac: float) -> float:
    return r_init * (r_end / r_init) ** frac


L_SCHEDULES = {
    "const": _ratio_const,
    "linear": _ratio_linear,
    "cosine": _ratio_cosine,
    "exponent": _ratio_exponent,
}


def l_ratio(schedule: str, r_init: float, r_end: float, step: int, total_steps: int) -> float:
    """r(k, K): the fraction of the way from t to s where the intermediate time l sits.

    The gap t - l = r (t - s) shrinks over training; step/total_steps is clamped to [0, 1].
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps}")
    frac = min(max(step / total_steps, 0.0), 1.0)
    return L_SCHEDULES[_checks.choice("l_schedule", schedule, L_SCHEDULES)](r_init, r_end, frac)


def intermediate_time(t: Tensor, s: Tensor, r: float) -> Tensor:
    """l = t + (s - t) r, kept at least 1e-4 below t and never below s; shape (n,)."""
    return torch.maximum(torch.minimum(t + (s - t) * r, t - MIN_GAP), s)
