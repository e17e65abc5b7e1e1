"""ImageNet-256 as cached SD-VAE latents.

``prepare_latents`` turns an image folder (one sub-folder per class) into a latent set: each
image is center-cropped to 256 as in ADM, encoded by the SD-VAE together with its horizontal
flip, and the posterior mean and std of both are stored. The set is a few ``.npy`` parts
(memory-mappable, one per shard) with a ``manifest.json``; preparation resumes where it
stopped and splits across GPUs by shard. ``LatentDataset`` draws mean + std * noise, scaled
by 0.18215, with the flip chosen at random.

Part array layout: (n, 2, 2, C, h, w) = (image, [original, flipped], [mean, std], latent).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

DEFAULT_VAE = "stabilityai/sd-vae-ft-mse"
LATENT_SCALE = 0.18215
LATENT_FORMAT = "soflow-latents-v1"
MANIFEST = "manifest.json"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


# ---------------------------------------------------------------- images
def center_crop_arr(image, image_size: int) -> np.ndarray:
    """ADM's center crop: halve with a box filter while the short side is >= 2x the target,
    resize the short side to ``image_size`` (bicubic), crop the center; returns uint8 (S, S, 3)."""
    from PIL import Image

    while min(*image.size) >= 2 * image_size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = image_size / min(*image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return arr[top:top + image_size, left:left + image_size]


def list_images(folder: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Images of an ImageNet-style folder (class sub-folders, sorted): paths, labels, class names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in class sub-folders of {folder}")
    return paths, np.asarray(labels, dtype=np.int64), classes


def _load_image(path: Path, image_size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return center_crop_arr(image.convert("RGB"), image_size)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ValueError(f"corrupt or unreadable image {path}: {err}") from None


# ---------------------------------------------------------------- VAE
def load_vae(vae: Any = DEFAULT_VAE, device: str | torch.device = "cpu"):
    """A diffusers AutoencoderKL from a hub name or local folder (or one passed in), in eval mode."""
    if isinstance(vae, (str, Path)):
        try:
            from diffusers import AutoencoderKL
        except ImportError as err:
            raise ImportError("latents need diffusers: pip install 'soflow-mini[latents]'") from err
        vae = AutoencoderKL.from_pretrained(str(vae))
    return vae.to(device).eval().requires_grad_(False)


def vae_name(vae: Any) -> str:
    if isinstance(vae, (str, Path)):
        return str(vae)
    return str(getattr(vae.config, "_name_or_path", "") or "custom")


@torch.no_grad()
def encode_posterior(vae, images: np.ndarray, device: str | torch.device = "cpu") -> Tensor:
    """Posterior mean and std of images uint8 (n, H, W, 3) and of their flips: (n, 2, 2, C, h, w)."""
    x = torch.from_numpy(np.require(images, requirements="CW")).to(device)  # (n, H, W, 3) uint8
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (n, 3, H, W)
    n = x.shape[0]
    dist = vae.encode(torch.cat([x, x.flip(-1)])).latent_dist
    stats = torch.stack([dist.mean, dist.std], dim=1)  # (2n, 2, C, h, w)
    return stats.view(2, n, *stats.shape[1:]).transpose(0, 1).float().cpu()  # (n, 2, 2, C, h, w)


@torch.no_grad()
def decode_latents(vae, z: Tensor, scale: float = LATENT_SCALE) -> Tensor:
    """Images in [-1, 1] (B, 3, H, W) from scaled latents z (B, C, h, w)."""
    return vae.decode(z.to(vae.dtype) / scale).sample.float()


# ---------------------------------------------------------------- preparation
def _part_name(shard: int, num_shards: int) -> str:
    return f"part-{shard:05d}-of-{num_shards:05d}"


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def prepare_latents(
    image_dir: str | Path,
    out_dir: str | Path,
    *,
    vae: Any = DEFAULT_VAE,
    image_size: int = 256,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    shard: int = 0,
    num_shards: int = 1,
    dtype: str = "float16",
    progress: bool = True,
) -> Path:
    """Encode shard ``shard`` of ``num_shards`` of the images in ``image_dir`` into ``out_dir``.

    Shards are contiguous ranges of the sorted image list and write separate parts, so they
    can run at once on several GPUs; rerunning a shard skips the rows already written.
    Returns the manifest path.
    """
    from tqdm.auto import tqdm

    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must lie in [0, {num_shards}), got {shard}")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    paths, labels, classes = list_images(image_dir)
    if num_shards > len(paths):
        raise ValueError(f"num_shards ({num_shards}) must not exceed the number of images ({len(paths)})")
    model = load_vae(vae, device)
    factor = 2 ** (len(model.config.block_out_channels) - 1)
    if image_size % factor:
        raise ValueError(f"image_size must be divisible by the VAE's downsampling factor {factor}, got {image_size}")
    latent_shape = [int(model.config.latent_channels), image_size // factor, image_size // factor]
    bounds = [len(paths) * i // num_shards for i in range(num_shards + 1)]
    digest = hashlib.sha1("\n".join(str(p.relative_to(image_dir)) for p in paths).encode()).hexdigest()
    manifest = dict(
        format=LATENT_FORMAT, num_images=len(paths), image_size=image_size, latent_shape=latent_shape,
        dtype=dtype, vae=vae_name(vae), latent_scale=LATENT_SCALE, classes=classes, images_sha1=digest,
        labels="labels.npy",
        parts=[dict(file=_part_name(i, num_shards) + ".npy", done=_part_name(i, num_shards) + "-done.npy",
                    start=bounds[i], stop=bounds[i + 1]) for i in range(num_shards)],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists():
        old = read_manifest(out_dir)
        changed = [k for k in manifest if old.get(k) != manifest[k]]
        if changed:
            raise ValueError(
                f"{manifest_path} was written with other settings ({', '.join(changed)}); use a new output folder"
            )
    _write_atomic(manifest_path, lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))
    _write_atomic(out_dir / "labels.npy", lambda fh: np.save(fh, labels))

    part = manifest["parts"][shard]
    lo, hi = part["start"], part["stop"]
    shape = (hi - lo, 2, 2, *latent_shape)
    data_path, done_path = out_dir / part["file"], out_dir / part["done"]
    if data_path.exists() and done_path.exists():  # resume
        data = _open_npy(data_path, "r+", shape, np.dtype(dtype))
        done = _open_npy(done_path, "r+", (hi - lo,), np.dtype(bool))
    else:
        data = np.lib.format.open_memmap(data_path, mode="w+", dtype=dtype, shape=shape)
        done = np.lib.format.open_memmap(done_path, mode="w+", dtype=bool, shape=(hi - lo,))
    todo = np.flatnonzero(~done)
    bar = tqdm(total=len(todo), disable=not progress, desc=f"latents {part['file']}", unit="img")
    for chunk in np.array_split(todo, max(1, -(-len(todo) // batch_size))) if len(todo) else []:
        images = np.stack([_load_image(paths[lo + i], image_size) for i in chunk])  # (n, S, S, 3)
        data[chunk] = encode_posterior(model, images, device).numpy().astype(dtype)
        data.flush()  # rows first, then their done flags: a crash never marks unwritten rows
        done[chunk] = True
        done.flush()
        bar.update(len(chunk))
    bar.close()
    return manifest_path


# ---------------------------------------------------------------- reading
def read_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {root}: prepare the latents first (soflow-prepare-latents)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"corrupt latent manifest {path}: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != LATENT_FORMAT:
        raise ValueError(f"corrupt latent manifest {path}: expected format {LATENT_FORMAT!r}")
    return manifest


def _open_npy(path: Path, mode: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode=mode)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"corrupt or truncated latent file {path}: {err}") from None
    if array.shape != tuple(shape) or array.dtype != dtype:
        raise ValueError(
            f"corrupt latent file {path}: expected {dtype} {tuple(shape)}, got {array.dtype} {array.shape}"
        )
    return array


class LatentDataset:
    """A prepared latent set, memory-mapped. ``batch(index, generator)`` returns
    x (n, C, h, w) = 0.18215 (mean + std * noise) of a randomly flipped image, and labels (n,)."""

    def __init__(self, root: str | Path):
        root = Path(root)
        self.manifest = manifest = read_manifest(root)
        self.scale = float(manifest["latent_scale"])
        self.latent_shape = tuple(manifest["latent_shape"])
        dtype = np.dtype(manifest["dtype"])
        labels = _open_npy(root / manifest["labels"], "r", (manifest["num_images"],), np.dtype(np.int64))
        self.labels = torch.from_numpy(np.array(labels))  # (N,)
        self.parts, self.starts = [], []
        for i, part in enumerate(manifest["parts"]):
            rows = part["stop"] - part["start"]
            data_path, done_path = root / part["file"], root / part["done"]
            rerun = f"soflow-prepare-latents --shard {i} --num-shards {len(manifest['parts'])}"
            for path in (data_path, done_path):
                if not path.is_file():
                    raise FileNotFoundError(f"latent part {path} is missing: run {rerun}")
            missing = int((~_open_npy(done_path, "r", (rows,), np.dtype(bool))).sum())
            if missing:
                raise ValueError(f"latent part {data_path} is incomplete ({missing} of {rows} rows): rerun {rerun}")
            self.parts.append(_open_npy(data_path, "r", (rows, 2, 2, *self.latent_shape), dtype))
            self.starts.append(part["start"])
        self.starts = np.asarray(self.starts)

    def __len__(self) -> int:
        return int(self.manifest["num_images"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])

    def batch(self, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = index.numpy()
        part_of = np.searchsorted(self.starts, idx, side="right") - 1
        rows = np.empty((len(idx), 2, 2, *self.latent_shape), dtype=self.parts[0].dtype)
        for p in np.unique(part_of):
            sel = part_of == p
            rows[sel] = self.parts[p][idx[sel] - self.starts[p]]
        stats = torch.from_numpy(rows).float()  # (n, 2, 2, C, h, w)
        flip = torch.randint(0, 2, (len(idx),), generator=generator)
        mean, std = stats[torch.arange(len(idx)), flip].unbind(1)  # (n, C, h, w) each
        x = (mean + std * torch.randn(mean.shape, generator=generator)) * self.scale  # (n, C, h, w)
        return x, self.labels[index]
