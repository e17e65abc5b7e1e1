"""Conditioning embedders shared by the networks: times (sinusoidal + MLP) and class labels."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """[cos(t w_i), sin(t w_i)] with w_i = max_period^(-i / (dim/2)); t (B,) -> (B, dim)."""
    half = dim // 2
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32  # never below fp32
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)
    args = t.to(dtype)[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 * half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Embed a scalar time per sample: sinusoidal features of (scale * t), then Linear-SiLU-Linear.

    The DiT of SoFlow embeds the raw t in [0, 1] (scale 1) with 256 frequencies.
    """

    def __init__(self, hidden_size: int, frequency_size: int = 256, scale: float = 1.0):
        super().__init__()
        self.frequency_size = frequency_size
        self.scale = scale
        self.mlp = nn.Sequential(
            nn.Linear(frequency_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: Tensor) -> Tensor:
        freq = sinusoidal_embedding(self.scale * t, self.frequency_size)  # (B, frequency_size)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # (B, hidden)


class LabelEmbedder(nn.Module):
    """A table of num_classes + 1 rows; row num_classes is the null (dropped) class.

    Label dropout for classifier-free guidance happens in the loss, not here.
    """

    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, y: Tensor | None, batch: int) -> Tensor:
        if y is None:  # unconditional prediction: every sample gets the null class
            y = torch.full((batch,), self.num_classes, device=self.embedding_table.weight.device)
        return self.embedding_table(y)  # (B, hidden)
