"""A minimal in-memory training loop for 2D toys and other small tensors (CPU, seconds).

The full trainer (checkpoints, EMA, DDP, logging) lives in ``soflow_mini.train``; this loop
is what the book's chapters use to train a model live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .ema import EMA

LrSchedule = Literal["constant", "cosine"]


def learning_rate_factor(step: int, total_steps: int, schedule: LrSchedule, warmup_steps: int = 0) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then constant or cosine."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class History:
    """Per-step logs of a training run: ``history["fm_mse"]`` is a list of floats.

    ``ema`` holds the averaged weights when the run kept them (``with history.ema.swap_in(model)``).
    """

    logs: dict[str, list[float]] = field(default_factory=dict)
    ema: EMA | None = None

    def append(self, logs: dict[str, Tensor]) -> None:
        for key, value in logs.items():
            self.logs.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        return self.logs[key]

    def smoothed(self, key: str, window: int = 50) -> list[float]:
        """Running mean over ``window`` steps (shorter at the start)."""
        values = torch.tensor(self.logs[key], dtype=torch.float64)
        csum = torch.cat([torch.zeros(1, dtype=torch.float64), values.cumsum(0)])
        idx = torch.arange(1, len(values) + 1)
        lo = (idx - window).clamp(min=0)
        return ((csum[idx] - csum[lo]) / (idx - lo)).tolist()


def train_toy(
    model: nn.Module,
    data: Tensor,
    labels: Tensor | None = None,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
    ema_decay: float | None = None,
    lr_schedule: LrSchedule = "constant",
    warmup_steps: int = 0,
    progress: bool = False,
) -> History:
    """Train ``model`` (anything with ``loss(x0, y, step=, total_steps=, generator=)``) with
    AdamW on minibatches drawn from ``data`` (N, ...); returns the per-step logs.

    ``lr_schedule``: "constant" or "cosine" (decay to 0 at the last step), after a linear
    warm-up over ``warmup_steps``. With ``ema_decay`` the run also keeps an exponential moving average of the weights
    (with warm-up) in ``history.ema``; the model itself keeps the online weights.
    Deterministic for a given seed on a given machine.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    if labels is not None and labels.shape[0] != data.shape[0]:
        raise ValueError(f"labels must have one entry per data row ({data.shape[0]}), got {labels.shape[0]}")
    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    if not 0 <= warmup_steps < steps:
        raise ValueError(f"warmup_steps must lie in [0, steps), got {warmup_steps}")
    g = torch.Generator(device=data.device).manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    scheduler = None
    if lr_schedule != "constant" or warmup_steps:
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: learning_rate_factor(k, steps, lr_schedule, warmup_steps))
    history = History(ema=None if ema_decay is None else EMA(model, ema_decay, warmup=True))
    model.train()
    for step in tqdm(range(steps), disable=not progress, desc="training"):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=g, device=data.device)
        y = None if labels is None else labels[idx]
        loss, logs = model.loss(data[idx], y, step=step, total_steps=steps, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        if history.ema is not None:
            history.ema.update(model)
        history.append(logs)
    model.eval()
    return history
