"""Turning samples into files: uint8 images, PNG grids, 2D density pictures and .npz batches
in the layout of the ADM evaluator (uint8 NHWC under key ``arr_0``)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def to_uint8(x: Tensor) -> Tensor:
    """Images in [-1, 1] (B, C, H, W) -> uint8 (B, H, W, C), rounded to the nearest level."""
    x = ((x.detach().float() + 1.0) * 127.5).round().clamp(0, 255)  # (B, C, H, W)
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu()  # (B, H, W, C)


def image_grid(images: Tensor | np.ndarray, *, nrow: int | None = None, scale: int = 1, pad: int = 2) -> np.ndarray:
    """Tile uint8 images (B, H, W, C) into one uint8 picture (rows, cols, 3), each image
    enlarged ``scale`` times (nearest neighbour) so small ones stay visible."""
    images = torch.as_tensor(np.asarray(images))
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be uint8 (B, H, W, C), got {images.dtype} {tuple(images.shape)}")
    if images.shape[-1] == 1:
        images = images.expand(-1, -1, -1, 3)
    images = images.repeat_interleave(scale, 1).repeat_interleave(scale, 2)  # (B, sH, sW, 3)
    B, H, W, C = images.shape
    cols = nrow or math.ceil(math.sqrt(B))
    rows = math.ceil(B / cols)
    canvas = torch.full((rows * (H + pad) + pad, cols * (W + pad) + pad, C), 255, dtype=torch.uint8)
    for i in range(B):
        r, c = divmod(i, cols)
        canvas[pad + r * (H + pad):pad + r * (H + pad) + H, pad + c * (W + pad):pad + c * (W + pad) + W] = images[i]
    return canvas.numpy()


def points_image(points: Tensor, *, size: int = 256, extent: float = 3.0) -> np.ndarray:
    """A 2D sample (N, 2) as a density picture uint8 (size, size, 3) over [-extent, extent]^2
    (dark = many points; y points up)."""
    p = points.detach().float().cpu()
    ij = ((p + extent) / (2 * extent) * size).floor().long()  # (N, 2) pixel coordinates
    keep = ((ij >= 0) & (ij < size)).all(1)
    ij = ij[keep]
    counts = torch.zeros(size, size)
    counts.index_put_((size - 1 - ij[:, 1], ij[:, 0]), torch.ones(len(ij)), accumulate=True)
    level = (counts / counts.max().clamp(min=1)).sqrt()  # sqrt: faint regions stay visible
    grey = (255 * (1 - level)).round().to(torch.uint8)
    return grey[..., None].expand(-1, -1, 3).numpy()


def save_png(picture: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 picture (H, W, 3) or (H, W) as a PNG file, creating its folder; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)
    return path


def save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """np.savez through a temporary file, so a partly written batch never replaces a good one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path
