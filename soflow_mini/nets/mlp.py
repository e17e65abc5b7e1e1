"""A small time-conditioned residual MLP for low-dimensional toys (same contract as the DiT).

Contract: ToyMLP(x, t, s, y) -> F with the shape of x, where x (B, dim), t and s (B,).
"""

from __future__ import annotations

from torch import Tensor, nn

from .embeddings import LabelEmbedder, TimestepEmbedder


class ResidualBlock(nn.Module):
    """h + W2 SiLU(W1 SiLU(LN(h)) + c): the conditioning c enters every block."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        z = self.fc1(self.act(self.norm(h))) + c  # (B, W)
        return h + self.fc2(self.act(z))  # (B, W)


class ToyMLP(nn.Module):
    """Residual MLP with embeddings of t, of the gap t - s and of an optional class label.

    ``time_scale`` multiplies t before the sinusoidal features; a large value gives the
    small network fine resolution in time (the DiT keeps the raw t, scale 1).
    """

    def __init__(
        self,
        dim: int = 2,
        width: int = 256,
        depth: int = 4,
        num_classes: int = 0,
        time_features: int = 64,
        time_scale: float = 1000.0,
    ):
        super().__init__()
        self.dim = dim
        self.num_classes = num_classes
        self.t_embedder = TimestepEmbedder(width, time_features, scale=time_scale)
        self.gap_embedder = TimestepEmbedder(width, time_features, scale=time_scale)
        self.y_embedder = LabelEmbedder(num_classes, width) if num_classes > 0 else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: Tensor, t: Tensor, s: Tensor, y: Tensor | None = None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        if y is not None and self.y_embedder is None:
            raise ValueError("y must be None: this network is unconditional (num_classes=0)")
        c = self.t_embedder(t) + self.gap_embedder(t - s)  # (B, W)
        if self.y_embedder is not None:
            c = c + self.y_embedder(y, x.shape[0])  # (B, W)
        h = self.inp(x)  # (B, W)
        for block in self.blocks:
            h = block(h, c)  # (B, W)
        return self.out(h)  # (B, dim)
