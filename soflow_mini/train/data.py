"""Training data behind one small interface, and the index stream that feeds it.

A data set has a ``spec`` (what a model trained on it must know, stored in checkpoints),
a length, and ``batch(index, generator) -> (x, y)``: the samples at ``index`` with any
random augmentation drawn from ``generator``. Batches are pure functions of (index,
generator), which makes resuming exact and multi-process runs independent of the split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from ..data import sample_toy, toy_num_classes
from .config import DataConfig

DataKind = Literal["points", "image", "latent"]


@dataclass(frozen=True)
class DataSpec:
    """kind, the shape of one sample, the number of classes the model sees (0: none), and
    for latents the VAE and scale that turn samples into images."""

    kind: DataKind
    shape: tuple[int, ...]
    num_classes: int = 0
    toy: str | None = None
    vae: str | None = None
    latent_scale: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DataSpec":
        return cls(**{**values, "shape": tuple(values["shape"])})


class TrainData(Protocol):
    spec: DataSpec

    def __len__(self) -> int: ...

    def batch(self, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor | None]: ...


class PointData:
    """A fixed pool of 2D toy points (drawn once from the seed)."""

    def __init__(self, name: str, size: int, *, conditional: bool, seed: int):
        self.x, self.y = sample_toy(name, size, seed=seed)  # (N, 2), (N,)
        self.spec = DataSpec("points", (2,), toy_num_classes(name) if conditional else 0, toy=name)

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        return self.x[index], self.y[index] if self.spec.num_classes else None


class ImageData:
    """uint8 images (N, H, W, C) in memory, served as floats in [-1, 1] (n, C, H, W),
    optionally flipped left-right at random."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, *, hflip: bool):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
        self.images = torch.from_numpy(images)  # (N, H, W, C)
        self.labels = torch.from_numpy(labels)  # (N,)
        self.hflip = hflip
        H, W, C = images.shape[1:]
        self.spec = DataSpec("image", (C, H, W), num_classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        x = self.images[index].permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (n, C, H, W)
        if self.hflip:
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, self.labels[index] if self.spec.num_classes else None


class LatentData:
    """Prepared SD-VAE latents (see soflow_mini.data.latents)."""

    def __init__(self, root: str, *, conditional: bool):
        from ..data.latents import LatentDataset

        self.dataset = LatentDataset(root)
        self.spec = DataSpec(
            "latent", self.dataset.latent_shape, self.dataset.num_classes if conditional else 0,
            vae=self.dataset.manifest["vae"], latent_scale=self.dataset.scale,
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        x, y = self.dataset.batch(index, generator)
        return x, y if self.spec.num_classes else None


def build_data(config: DataConfig, *, seed: int = 0) -> TrainData:
    """The data set a DataConfig names (checked when the config was built)."""
    if config.dataset == "toy":
        return PointData(config.toy, config.toy_size, conditional=config.conditional, seed=seed)
    if config.dataset == "digits":
        from ..data.digits import load_digits_images

        images, labels = load_digits_images()
        return ImageData(images, labels, 10 if config.conditional else 0, hflip=config.hflip)
    if config.dataset == "cifar10":
        from ..data.cifar10 import load_cifar10

        images, labels = load_cifar10(config.root, train=True, download=config.download)
        return ImageData(images, labels, 10 if config.conditional else 0, hflip=config.hflip)
    return LatentData(config.root, conditional=config.conditional)


class IndexStream:
    """An endless stream of data indices: epoch e is a permutation drawn from (seed, e).

    ``take(start, count)`` returns stream positions [start, start + count), so the indices
    of any step are known without replaying earlier ones.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self._cache: dict[int, Tensor] = {}

    def _epoch(self, e: int) -> Tensor:
        if e not in self._cache:
            g = torch.Generator().manual_seed(derive_seed(self.seed, e, 0x5EED))
            kept = {k: v for k, v in self._cache.items() if k == e - 1}  # a batch may straddle two epochs
            self._cache = {**kept, e: torch.randperm(self.size, generator=g)}
        return self._cache[e]

    def take(self, start: int, count: int) -> Tensor:
        out, pos = [], start
        while pos < start + count:
            e, offset = divmod(pos, self.size)
            n = min(self.size - offset, start + count - pos)
            out.append(self._epoch(e)[offset:offset + n])
            pos += n
        return torch.cat(out)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (e.g. seed, step, shard), well mixed by numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)
