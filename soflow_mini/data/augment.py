"""The geometric augmentation of SoFlow's CIFAR-10 training: EDM's non-leaking augmentation.

Each image is, with probability p per transform (p = 0.12 in the paper), scaled, stretched and
translated, and always flipped left-right with probability 1/2; the network is told what was
done through 6 augmentation labels, so it learns the clean distribution (labels 0) alongside
the augmented ones, and sampling with labels 0 (or none) gives clean images ("non-leaking").

    labels = [flip, z_s, z_a cos r, z_a sin r, z_x, z_y]      (0 where a transform was not drawn)
    flip: 0 or 1 (x-flip);  isotropic scale 2^(0.2 z_s);  anisotropic scale 2^(0.2 z_a) along
    the axis at angle r and 2^(-0.2 z_a) across it (r = 0 with probability 1/2, otherwise
    uniform in (-pi, pi));  translation (z_x, z_y) * 0.125 * (W, H) pixels;  z ~ N(0, 1).

The geometric part maps output pixel centres back to input positions (image centre as origin,
x to the right, y down) and samples the input bilinearly after reflecting it across its edges
(``torch.nn.functional.grid_sample``). EDM instead resamples at twice the resolution between
two sym6 wavelet filters, which anti-aliases strong minifications; at these mild scales the two
differ little, and this version is exact on images that are affine functions of position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NUM_AUGMENT_LABELS = 6


@dataclass(frozen=True)
class AugmentDraw:
    """Per-sample parameters (each (B,)) of one draw; 0 where a transform was not drawn.

    ``flip`` is 0 or 1; ``scale``, ``aniso``, ``tx``, ``ty`` are standard-normal draws z (the
    transform is 2^(scale_std z), 2^(aniso_std z), z translate_std size); ``aniso_angle`` r.
    """

    flip: Tensor
    scale: Tensor
    aniso: Tensor
    aniso_angle: Tensor
    tx: Tensor
    ty: Tensor

    def labels(self) -> Tensor:
        """(B, 6) float32: [flip, scale, aniso cos r, aniso sin r, tx, ty]."""
        r = self.aniso_angle
        cols = [self.flip, self.scale, self.aniso * torch.cos(r), self.aniso * torch.sin(r), self.tx, self.ty]
        return torch.stack([c.float() for c in cols], dim=1)  # (B, 6)

    def geometric(self) -> Tensor:
        """(B,) bool: samples that need resampling (any scale, stretch or translation)."""
        return (self.scale != 0) | (self.aniso != 0) | (self.tx != 0) | (self.ty != 0)


def _matrices(rows: list[list[Tensor | float]], like: Tensor) -> Tensor:
    """(B, 3, 3) from a 3 x 3 nested list of (B,) tensors and numbers."""
    B = like.shape[0]
    full = [[e if isinstance(e, Tensor) else like.new_full((B,), float(e)) for e in row] for row in rows]
    return torch.stack([torch.stack(row, dim=1) for row in full], dim=1)  # (B, 3, 3)


def _scale(sx: Tensor, sy: Tensor) -> Tensor:
    return _matrices([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _rotate(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrices([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def _translate(tx: Tensor, ty: Tensor) -> Tensor:
    return _matrices([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


@dataclass(frozen=True)
class GeometricAugment:
    """EDM's geometric augmentation pipeline (x-flip, isotropic and anisotropic scaling,
    fractional translation); defaults are SoFlow's CIFAR-10 setting.

    ``p`` multiplies every transform's probability multiplier (``xflip``, ``scale``, ``aniso``,
    ``translate``; the flip multiplier 1e8 makes the flip decision always drawn, so half the
    images are flipped whatever p is, unless p = 0). Call it on images in [-1, 1]
    (B, C, H, W): ``images, labels = augment(x, generator=g)``.
    """

    p: float = 0.12
    xflip: float = 1e8
    scale: float = 1.0
    aniso: float = 1.0
    translate: float = 1.0
    scale_std: float = 0.2
    aniso_std: float = 0.2
    aniso_rotate_prob: float = 0.5
    translate_std: float = 0.125

    def __post_init__(self) -> None:
        for name in ("p", "xflip", "scale", "aniso", "translate", "scale_std", "aniso_std", "translate_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.aniso_rotate_prob <= 1.0:
            raise ValueError(f"aniso_rotate_prob must lie in [0, 1], got {self.aniso_rotate_prob}")

    def draw(
        self, batch: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> AugmentDraw:
        """Draw the parameters of ``batch`` samples (on the generator's device by default)."""
        if device is None:
            device = generator.device if generator is not None else "cpu"
        kw = dict(device=device, generator=generator)
        zeros = torch.zeros(batch, device=device)

        def chosen(multiplier: float) -> Tensor:  # (B,) bool: this transform is drawn
            return torch.rand(batch, **kw) < multiplier * self.p

        flip = torch.randint(0, 2, (batch,), **kw).float()
        flip = torch.where(chosen(self.xflip), flip, zeros)
        scale = torch.randn(batch, **kw)
        scale = torch.where(chosen(self.scale), scale, zeros)
        aniso = torch.randn(batch, **kw)
        angle = (torch.rand(batch, **kw) * 2 - 1) * math.pi
        aniso = torch.where(chosen(self.aniso), aniso, zeros)
        angle = torch.where(torch.rand(batch, **kw) < self.aniso_rotate_prob, angle, zeros)
        shift = torch.randn(2, batch, **kw)
        move = chosen(self.translate)
        tx, ty = torch.where(move, shift[0], zeros), torch.where(move, shift[1], zeros)
        return AugmentDraw(flip, scale, aniso, torch.where(aniso != 0, angle, zeros), tx, ty)

    def inverse_matrices(self, draw: AugmentDraw, height: int, width: int) -> Tensor:
        """(B, 3, 3) maps from output to input positions (pixels, origin at the image centre).

        The forward map scales isotropically, then stretches along the axis at angle r, then
        translates: G = T(t) R(-r) S(a, 1/a) R(r) S(s, s); this returns G^-1.
        """
        s = torch.exp2(self.scale_std * draw.scale)
        a = torch.exp2(self.aniso_std * draw.aniso)
        r = draw.aniso_angle
        tx, ty = draw.tx * self.translate_std * width, draw.ty * self.translate_std * height
        return (_scale(1 / s, 1 / s) @ _rotate(-r) @ _scale(1 / a, a) @ _rotate(r)
                @ _translate(-tx, -ty))  # (B, 3, 3)

    def apply(self, images: Tensor, draw: AugmentDraw) -> Tensor:
        """The augmented images (B, C, H, W) for given parameters; untouched rows stay exact."""
        if images.dim() != 4 or images.shape[0] != draw.flip.shape[0]:
            raise ValueError(f"images must have shape (B, C, H, W) with B = {draw.flip.shape[0]}, "
                             f"got {tuple(images.shape)}")
        dev = images.device
        flip = draw.flip.to(dev)[:, None, None, None] == 1
        images = torch.where(flip, images.flip(3), images)  # (B, C, H, W)
        rows = draw.geometric().to(dev)
        if not bool(rows.any()):
            return images
        B, C, H, W = images.shape
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        sub = AugmentDraw(*(getattr(draw, f).to(dev, dtype)[rows] for f in AugmentDraw.__dataclass_fields__))
        G_inv = self.inverse_matrices(sub, H, W)  # (n, 3, 3) in pixels
        # Reflect across the edges (about the edge pixel centres), by up to a full image each side.
        padded = F.pad(images[rows].to(dtype), (W - 1, W - 1, H - 1, H - 1), mode="reflect")  # (n, C, 3H-2, 3W-2)
        Hp, Wp = padded.shape[-2:]
        # Normalised coordinates of grid_sample (align_corners=False): u = x_centred * 2 / size.
        to_out = torch.diag(torch.tensor([W / 2, H / 2, 1.0], device=dev, dtype=dtype))
        to_in = torch.diag(torch.tensor([2 / Wp, 2 / Hp, 1.0], device=dev, dtype=dtype))
        theta = (to_in @ G_inv @ to_out)[:, :2]  # (n, 2, 3)
        grid = F.affine_grid(theta, [int(rows.sum()), C, H, W], align_corners=False)  # (n, H, W, 2)
        moved = F.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        images = images.clone()
        images[rows] = moved.to(images.dtype)  # (n, C, H, W)
        return images

    def __call__(self, images: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(augmented images (B, C, H, W), labels (B, 6) float32 on the images' device)."""
        if images.dim() != 4:
            raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
        draw = self.draw(images.shape[0], generator=generator,
                         device=generator.device if generator is not None else images.device)
        return self.apply(images, draw), draw.labels().to(images.device)


def augment(
    images: Tensor, *, p: float = 0.12, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """SoFlow's CIFAR-10 augmentation at probability ``p``: (images, labels (B, 6))."""
    return GeometricAugment(p=p)(images, generator=generator)
