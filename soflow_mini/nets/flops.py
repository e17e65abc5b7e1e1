"""Floating-point operations of one DiT forward pass, counted analytically.

Only matrix products are counted (linear layers, the patch convolution, the two products
of attention), at 2 FLOPs per multiply-add, as ``torch.utils.flop_counter`` counts them;
normalisation, activations and additions are a small remainder. The DiT paper's "Gflops"
count one multiply-add as one operation, i.e. ``DiTFlops.macs``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dit import DIT_SIZES, DiT


@dataclass(frozen=True)
class DiTFlops:
    """FLOPs of one forward pass for ONE sample, by part of the network."""

    tokens: int  # T = (H / p) * (W / p)
    patch_embed: int  # the p x p convolution: 2 T (p^2 C) D
    conditioning: int  # the t and t - s embedders: 2 x 2 (256 D + D^2)
    modulation: int  # adaLN of every block (6 D outputs) and of the final layer (2 D)
    attention_linear: int  # qkv and output projections: 2 T (3 D^2 + D^2) per block
    attention_scores: int  # Q K^T and (softmax) V: 2 x 2 T^2 D per block
    mlp: int  # fc1 and fc2: 2 x 2 T D (r D) per block
    final_linear: int  # tokens back to patches: 2 T D (p^2 C)

    @property
    def total(self) -> int:
        return (self.patch_embed + self.conditioning + self.modulation + self.attention_linear
                + self.attention_scores + self.mlp + self.final_linear)

    @property
    def macs(self) -> int:
        """Multiply-adds (= total / 2), the unit of the DiT paper's "Gflops"."""
        return self.total // 2


def dit_flops(
    *,
    input_size: int | tuple[int, int],
    in_channels: int,
    patch_size: int,
    hidden_size: int,
    depth: int,
    mlp_ratio: float = 4.0,
    frequency_size: int = 256,
) -> DiTFlops:
    """FLOPs of one DiT forward pass per sample (2 per multiply-add, matrix products only).

    The label embedding is a table lookup (0 FLOPs); the number of heads does not change
    the count.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if h % patch_size or w % patch_size:
        raise ValueError(f"input_size {(h, w)} must be divisible by patch_size {patch_size}")
    T, D, p, C = (h // patch_size) * (w // patch_size), hidden_size, patch_size, in_channels
    inner = int(hidden_size * mlp_ratio)
    return DiTFlops(
        tokens=T,
        patch_embed=2 * T * (p * p * C) * D,
        conditioning=2 * 2 * (frequency_size * D + D * D),
        modulation=2 * depth * D * 6 * D + 2 * D * 2 * D,
        attention_linear=2 * depth * T * 4 * D * D,
        attention_scores=2 * depth * 2 * T * T * D,
        mlp=2 * depth * 2 * T * D * inner,
        final_linear=2 * T * D * (p * p * C),
    )


def dit_flops_of(net: DiT) -> DiTFlops:
    """``dit_flops`` with the hyperparameters read off a built DiT (also one on the meta device)."""
    return dit_flops(
        input_size=net.input_size, in_channels=net.in_channels, patch_size=net.patch_size,
        hidden_size=net.x_embedder.proj.out_channels, depth=len(net.blocks),
        mlp_ratio=net.blocks[0].mlp.fc1.out_features / net.x_embedder.proj.out_channels,
        frequency_size=net.t_embedder.frequency_size,
    )


def dit_flops_by_name(name: str, input_size: int | tuple[int, int] = 32, in_channels: int = 4) -> DiTFlops:
    """``dit_flops`` of a registered size, e.g. ``dit_flops_by_name("DiT-XL/2", 32, 4)``."""
    if name not in DIT_SIZES:
        raise ValueError(f"unknown DiT size {name!r}; choose one of {list(DIT_SIZES)}")
    size = DIT_SIZES[name]
    return dit_flops(input_size=input_size, in_channels=in_channels, patch_size=size.patch_size,
                     hidden_size=size.hidden_size, depth=size.depth)
