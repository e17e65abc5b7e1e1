"""Diffusion Transformer (Peebles & Xie, 2023) with the two time embeddings of SoFlow.

Reads top to bottom: position embeddings, blocks, the model, the size registry.
Contract: DiT(x, t, s, y) -> F with the shape of x, where
    x (B, C, H, W), t and s (B,) in [0, 1], y (B,) int labels or None.
Conditioning c = TimeEmb(t) + GapEmb(t - s) + LabelEmb(y).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embeddings import LabelEmbedder, TimestepEmbedder


# ---------------------------------------------------------------- fixed 2D sin-cos positions
def sincos_2d(embed_dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2D sin-cos position embedding; returns (grid_h * grid_w, embed_dim)."""
    if embed_dim % 4:
        raise ValueError(f"hidden size must be divisible by 4 for 2D sin-cos positions, got {embed_dim}")
    gw, gh = np.meshgrid(np.arange(grid_w, dtype=np.float64), np.arange(grid_h, dtype=np.float64))
    emb_h = _sincos_1d(embed_dim // 2, gw.reshape(-1))  # first half encodes the column
    emb_w = _sincos_1d(embed_dim // 2, gh.reshape(-1))  # second half encodes the row
    return np.concatenate([emb_h, emb_w], axis=1)


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos, omega)  # (M, dim/2)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)  # (M, dim)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


# ---------------------------------------------------------------- layers
class PatchEmbed(nn.Module):
    """Split (B, C, H, W) into p x p patches and project each to the hidden size."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, T, D)


class Attention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, D // self.num_heads)  # (B, T, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, Dh)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, Dh)
        return self.proj(x.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class Mlp(nn.Module):
    def __init__(self, hidden_size: int, mlp_ratio: float):
        super().__init__()
        inner = int(hidden_size * mlp_ratio)
        self.fc1 = nn.Linear(hidden_size, inner)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(inner, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero: c sets shift, scale and a gate for both sub-layers."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=1)  # (B, D) each
        x = x + gate_a[:, None] * self.attn(modulate(self.norm1(x), shift_a, scale_a))  # (B, T, D)
        x = x + gate_m[:, None] * self.mlp(modulate(self.norm2(x), shift_m, scale_m))  # (B, T, D)
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # (B, D) each
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (B, T, p*p*C)


# ---------------------------------------------------------------- the model
class DiT(nn.Module):
    """DiT backbone returning F(x, t, s, y) with the shape of x (no learned sigma, no dropout)."""

    def __init__(
        self,
        input_size: int | tuple[int, int] = 32,
        in_channels: int = 4,
        num_classes: int = 0,
        patch_size: int = 2,
        hidden_size: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if h % patch_size or w % patch_size:
            raise ValueError(f"input_size {(h, w)} must be divisible by patch_size {patch_size}")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
        self.input_size = (h, w)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.grid = (h // patch_size, w // patch_size)

        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.gap_embedder = TimestepEmbedder(hidden_size)  # embeds t - s
        self.y_embedder = LabelEmbedder(num_classes, hidden_size) if num_classes > 0 else None
        pos = torch.from_numpy(sincos_2d(hidden_size, *self.grid)).float()[None]  # (1, T, D)
        self.register_buffer("pos_embed", pos, persistent=False)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size, in_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT initialisation. adaLN-Zero: every modulation output and the final linear layer
        start at zero, so each block starts as the identity and a fresh net outputs exactly 0."""

        def basic(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

        self.apply(basic)
        w = self.x_embedder.proj.weight  # initialise the patch projection like a Linear
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        for emb in (self.t_embedder, self.gap_embedder):
            nn.init.normal_(emb.mlp[0].weight, std=0.02)
            nn.init.normal_(emb.mlp[2].weight, std=0.02)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(B, T, p*p*C) -> (B, C, H, W)."""
        p, c = self.patch_size, self.in_channels
        gh, gw = self.grid
        x = x.reshape(x.shape[0], gh, gw, p, p, c)  # (B, gh, gw, p, p, C)
        x = torch.einsum("nhwpqc->nchpwq", x)  # (B, C, gh, p, gw, p)
        return x.reshape(x.shape[0], c, gh * p, gw * p)  # (B, C, H, W)

    def forward(self, x: Tensor, t: Tensor, s: Tensor, y: Tensor | None = None) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.input_size):
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, {self.input_size[0]}, {self.input_size[1]}), "
                f"got {tuple(x.shape)}"
            )
        if y is not None and self.y_embedder is None:
            raise ValueError("y must be None: this DiT is unconditional (num_classes=0)")
        h = self.x_embedder(x) + self.pos_embed.to(x.dtype)  # (B, T, D)
        c = self.t_embedder(t) + self.gap_embedder(t - s)  # (B, D)
        if self.y_embedder is not None:
            c = c + self.y_embedder(y, x.shape[0])  # (B, D)
        for block in self.blocks:
            h = block(h, c)  # (B, T, D)
        h = self.final_layer(h, c)  # (B, T, p*p*C)
        return self.unpatchify(h)  # (B, C, H, W)


# ---------------------------------------------------------------- size registry
@dataclass(frozen=True)
class DiTSize:
    patch_size: int
    hidden_size: int
    depth: int
    num_heads: int


DIT_SIZES: dict[str, DiTSize] = {
    # Small sizes for CPU work (this project's choice).
    "DiT-T/2": DiTSize(2, 128, 4, 4),
    "DiT-T/4": DiTSize(4, 128, 4, 4),
    "DiT-S/2": DiTSize(2, 384, 12, 6),
    "DiT-S/4": DiTSize(4, 384, 12, 6),
    # Published sizes (mlp ratio 4).
    "DiT-B/4": DiTSize(4, 768, 12, 12),
    "DiT-B/2": DiTSize(2, 768, 12, 12),
    "DiT-M/2": DiTSize(2, 1024, 16, 16),
    "DiT-L/2": DiTSize(2, 1024, 24, 16),
    "DiT-XL/2": DiTSize(2, 1152, 28, 16),
}


def build_dit(name: str, input_size: int | tuple[int, int] = 32, in_channels: int = 4, num_classes: int = 0) -> DiT:
    """A DiT of a registered size, e.g. ``build_dit("DiT-B/2", 32, 4, 1000)``."""
    if name not in DIT_SIZES:
        raise ValueError(f"unknown DiT size {name!r}; choose one of {list(DIT_SIZES)}")
    size = DIT_SIZES[name]
    return DiT(
        input_size=input_size, in_channels=in_channels, num_classes=num_classes,
        patch_size=size.patch_size, hidden_size=size.hidden_size, depth=size.depth, num_heads=size.num_heads,
    )
