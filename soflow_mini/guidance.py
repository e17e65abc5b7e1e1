"""Classifier-free guidance baked into the training target.

The guided velocity is computed without gradient and used as the regression target, so
that sampling needs a single conditional network evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .paths import expand_like

DECAY_RATE = 0.025


def guidance_decay(t: Tensor, decay_time: float) -> Tensor:
    """gamma(t): 1 for t <= d0, decaying smoothly to 0 as t -> 1 (noise); shape of t.

    With u = clamp((1 - t) / (1 - d0), 0, 1 - 1e-6): gamma = 1 - exp(-k u / (1 - u)), k = 0.025.
    """
    u = ((1 - t) / (1 - decay_time)).clamp(0.0, 1 - 1e-6)
    gamma = 1 - torch.exp(-DECAY_RATE * u / (1 - u))
    return torch.where(t <= decay_time, torch.ones_like(t), gamma)


def guided_velocity(
    v_t: Tensor,
    v_cond: Tensor,
    v_uncond: Tensor,
    t: Tensor,
    *,
    scale: float,
    mix_ratio: float,
    decay_time: float,
) -> Tensor:
    """Guided target velocity, all (B, ...):

    v_g = v_t + gamma(t) (w - 1) (v_t - v_uncond);  then  mix v_g + (1 - mix) v_cond.
    """
    gamma = expand_like(guidance_decay(t, decay_time), v_t)
    v_g = v_t + gamma * (scale - 1) * (v_t - v_uncond)
    return mix_ratio * v_g + (1 - mix_ratio) * v_cond


def drop_labels(y: Tensor, drop_rate: float, null_class: int, *, generator=None) -> tuple[Tensor, Tensor]:
    """Replace a random fraction of labels by the null class; returns (y_in, mask), both (B,)."""
    mask = torch.rand(y.shape, device=y.device, generator=generator) < drop_rate
    return torch.where(mask, torch.full_like(y, null_class), y), mask
