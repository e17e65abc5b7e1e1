"""Exponential moving average of a model's parameters, kept in a chosen dtype."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class EMA:
    """theta_ema <- d theta_ema + (1 - d) theta after every ``update``.

    warmup=True uses d_k = min(decay, (1 + k) / (10 + k)) for the k-th update, so early
    averages are not dominated by the random initialisation. ``dtype`` (e.g. torch.float64)
    sets the precision of the stored average; buffers are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, *, warmup: bool = False, dtype: torch.dtype | None = None):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = {
            name: p.detach().clone().to(dtype or p.dtype) for name, p in model.named_parameters()
        }

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        params = dict(model.named_parameters())
        if params.keys() != self.shadow.keys():
            raise ValueError("EMA.update got a model whose parameters differ from the tracked one")
        shadow = list(self.shadow.values())
        online = [params[name].detach().to(s.dtype) for name, s in self.shadow.items()]
        torch._foreach_lerp_(shadow, online, 1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (cast to its parameter dtypes)."""
        for name, p in model.named_parameters():
            p.copy_(self.shadow[name].to(p.dtype))

    @contextlib.contextmanager
    def swap_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Evaluate with the averaged weights; the online weights come back on exit."""
        backup = {name: p.detach().clone() for name, p in model.named_parameters()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(backup[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = self.shadow.keys() - state["shadow"].keys()
        if missing:
            raise ValueError(f"EMA state lacks parameters: {sorted(missing)[:5]}")
        self.decay, self.warmup, self.num_updates = state["decay"], state["warmup"], state["num_updates"]
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
