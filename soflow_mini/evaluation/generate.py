"""Sampling many samples in batches, on any device and over torchrun processes, and the
pictures of them.

For a given batch size, sample i is the same however the batches are spread over
processes: its noise and any re-noising draws come from (seed, batch index), its label
from (seed, i).
"""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..train import distributed
from ..train.checkpoint import forked_rng
from ..train.data import DataSpec, derive_seed
from ..train.distributed import DistInfo
from .samples import image_grid, points_image, save_npz, save_png, to_uint8

LabelChoice = Sequence[int] | str | None


def resolve_labels(labels: LabelChoice, num_samples: int, num_classes: int, seed: int = 0) -> Tensor | None:
    """(num_samples,) int64 class labels: "random" (uniform, from seed), a list of classes
    (repeated in turn), or None for an unconditional model."""
    if num_classes == 0:
        if labels not in (None, "random"):
            raise ValueError("labels must be left out: the model is unconditional")
        return None
    if labels is None or labels == "random":
        g = torch.Generator().manual_seed(derive_seed(seed, 0x1AB))
        return torch.randint(0, num_classes, (num_samples,), generator=g)
    if isinstance(labels, str):
        raise ValueError(f"labels must be 'random' or a list of class indices, got {labels!r}")
    chosen = torch.as_tensor(list(labels), dtype=torch.long)
    if chosen.numel() == 0 or chosen.min() < 0 or chosen.max() >= num_classes:
        raise ValueError(f"labels must be class indices in [0, {num_classes - 1}], got {list(labels)}")
    return chosen.repeat(math.ceil(num_samples / chosen.numel()))[:num_samples]


def to_images(x: Tensor, spec: DataSpec, vae: Any = None) -> Tensor:
    """uint8 images (B, H, W, C) of image or latent samples; latents go through ``vae``
    (without one, a preview of the first three latent channels)."""
    if spec.kind == "image":
        return to_uint8(x)
    if spec.kind != "latent":
        raise ValueError(f"samples of kind {spec.kind!r} are not images")
    if vae is not None:
        from ..data.latents import decode_latents

        return to_uint8(decode_latents(vae, x.to(vae.device), spec.latent_scale))
    z = x[:, :3].float()  # (B, 3, h, w)
    lo, hi = z.amin((1, 2, 3), keepdim=True), z.amax((1, 2, 3), keepdim=True)
    return to_uint8(2 * (z - lo) / (hi - lo).clamp(min=1e-6) - 1).repeat_interleave(8, 1).repeat_interleave(8, 2)


def picture(samples: Tensor, spec: DataSpec, vae: Any = None) -> np.ndarray:
    """One picture of a batch of samples: a density image for points, a grid for images."""
    if spec.kind == "points":
        return points_image(samples)
    images = to_images(samples, spec, vae)
    return image_grid(images, scale=max(1, 64 // images.shape[1]))


def grid_writer(spec: DataSpec) -> Callable[[Tensor, Path], Path]:
    """``write(samples, path)`` for the trainer's grids. For latents the VAE named in the
    spec is loaded on first use; if it cannot be (offline, no diffusers), a latent preview."""
    state: dict[str, Any] = {}

    def write(samples: Tensor, path: Path) -> Path:
        if spec.kind == "latent" and "vae" not in state:
            state["vae"] = None
            try:
                from ..data.latents import load_vae

                state["vae"] = load_vae(spec.vae, samples.device)
            except Exception as err:  # noqa: BLE001 - any failure means "no decoder"
                warnings.warn(f"sample grids show raw latents: could not load VAE {spec.vae!r} ({err})", stacklevel=2)
        return save_png(picture(samples, spec, state.get("vae")), path)

    return write


@torch.no_grad()
def generate(
    model: nn.Module,
    spec: DataSpec,
    *,
    num_samples: int,
    batch_size: int = 64,
    sample_kwargs: dict[str, Any] | None = None,
    labels: LabelChoice = "random",
    seed: int = 0,
    device: torch.device | str = "cpu",
    vae: Any = None,
    progress: bool = True,
    dist_info: DistInfo | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw ``num_samples`` samples; returns (samples, labels) for this process's batches
    (batch b goes to process b % world_size), in batch order.

    samples: uint8 (N, H, W, C) for images and latents (decoded with ``vae``),
    float32 (N, 2) for points.
    """
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be positive, got {num_samples} and {batch_size}")
    info = dist_info or DistInfo()
    device = torch.device(device)
    model = model.to(device).eval()
    y_all = resolve_labels(labels, num_samples, spec.num_classes, seed)
    batches = range(info.rank, math.ceil(num_samples / batch_size), info.world_size)
    out, out_labels = [], []
    for b in tqdm(batches, disable=not (progress and info.is_main), desc="sampling", unit="batch"):
        lo, hi = b * batch_size, min((b + 1) * batch_size, num_samples)
        g = torch.Generator().manual_seed(derive_seed(seed, b))
        noise = torch.randn((hi - lo, *spec.shape), generator=g).to(device)  # (n, ...)
        y = None if y_all is None else y_all[lo:hi].to(device)
        with forked_rng(device, derive_seed(seed, b, 1)):
            x = model.sample(noise, y, **(sample_kwargs or {}))  # (n, ...)
        out.append(x.float().cpu().numpy() if spec.kind == "points" else to_images(x, spec, vae).numpy())
        if y is not None:
            out_labels.append(y.cpu().numpy())
    empty = np.zeros((0, *((2,) if spec.kind == "points" else ())), dtype=np.float32)
    samples = np.concatenate(out) if out else empty
    return samples, (np.concatenate(out_labels) if out_labels else None)


def write_samples(
    out_dir: str | Path,
    samples: np.ndarray,
    labels: np.ndarray | None,
    spec: DataSpec,
    *,
    batch_size: int,
    num_samples: int,
    grid_size: int = 64,
    dist_info: DistInfo | None = None,
) -> Path | None:
    """Gather every process's part into ``out_dir/samples.npz`` and ``out_dir/grid.png``.

    Images: arr_0 uint8 (N, H, W, C) (the ADM evaluator's layout) and arr_1 labels when
    conditional; points: ``points`` float32 (N, 2), ``labels``, and the toy's name.
    Returns the .npz path on process 0, None elsewhere.
    """
    info = dist_info or DistInfo()
    out_dir = Path(out_dir)
    parts = out_dir / ".parts"
    if info.active:
        parts.mkdir(parents=True, exist_ok=True)
        save_npz(parts / f"rank{info.rank:05d}.npz", samples=samples, labels=np.zeros(0) if labels is None else labels)
        distributed.barrier()
    if not info.is_main:
        return None
    if info.active:  # process r holds batches r, r + W, ...: put them back in order
        loaded = [np.load(parts / f"rank{r:05d}.npz") for r in range(info.world_size)]
        num_batches = math.ceil(num_samples / batch_size)
        sizes = [min(batch_size, num_samples - b * batch_size) for b in range(num_batches)]
        pieces = {}
        for r, part in enumerate(loaded):
            mine = list(range(r, num_batches, info.world_size))
            offsets = np.cumsum([0] + [sizes[b] for b in mine])
            for i, b in enumerate(mine):
                pieces[b] = (part["samples"][offsets[i]:offsets[i + 1]], part["labels"][offsets[i]:offsets[i + 1]])
        samples = np.concatenate([pieces[b][0] for b in range(num_batches)])
        labels = None if labels is None else np.concatenate([pieces[b][1] for b in range(num_batches)])
        shutil.rmtree(parts)
    if spec.kind == "points":
        arrays = {"points": samples, "toy": np.array(spec.toy or "")}
        if labels is not None:
            arrays["labels"] = labels
        save_png(points_image(torch.from_numpy(samples)), out_dir / "grid.png")
    else:
        arrays = {"arr_0": samples} if labels is None else {"arr_0": samples, "arr_1": labels}
        shown = torch.from_numpy(samples[:grid_size])
        save_png(image_grid(shown, scale=max(1, 64 // samples.shape[1])), out_dir / "grid.png")
    return save_npz(out_dir / "samples.npz", **arrays)
