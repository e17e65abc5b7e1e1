"""FID and Inception Score through torch-fidelity's TF-compatible Inception ("inception-v3-compat"),
the PyTorch port of the network behind the ADM evaluator's published numbers.

The statistics and scores are torch-fidelity's own functions; this module feeds them
uint8 images in batches and reads reference statistics. Any callable with the contract of
``FeatureFn`` can replace the Inception network (tests inject a small one).

Weights: without ``weights_path`` torch-fidelity downloads
weights-inception-2015-12-05-6726825d.pth (about 92 MB) from its GitHub release into the
torch hub cache on first use.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from urllib.error import URLError
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

# uint8 images (B, 3, H, W) -> (pool features (B, D), logits (B, K) or None)
FeatureFn = Callable[[Tensor], tuple[Tensor, Tensor | None]]

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases (v0.2.0)"


class DownloadError(OSError):
    """A file the command needs could not be downloaded; the message names it, its source and
    the option that takes a local copy."""


def inception_features(weights_path: str | Path | None = None, device: str | torch.device = "cpu") -> FeatureFn:
    """torch-fidelity's TF-compatible InceptionV3: 2048-d pool features and unbiased logits."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise ImportError("FID needs torch-fidelity: pip install 'soflow-mini[fid]'") from err
    if weights_path is not None and not Path(weights_path).is_file():
        raise FileNotFoundError(f"Inception weights not found: {weights_path}")
    try:
        net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"],
            feature_extractor_weights_path=None if weights_path is None else str(weights_path),
        ).to(device)
    except (URLError, ConnectionError, TimeoutError) as err:  # HTTPError is a URLError
        raise DownloadError(
            f"could not download the Inception weights {INCEPTION_WEIGHTS} from {INCEPTION_URL} "
            f"({getattr(err, 'reason', err)}); pass a local copy with --inception-weights PATH"
        ) from None

    def features(images: Tensor) -> tuple[Tensor, Tensor]:
        pool, logits = net(images.to(device))
        return pool, logits

    return features


@torch.no_grad()
def compute_features(
    images: np.ndarray | Tensor, feature_fn: FeatureFn, *, batch_size: int = 100, progress: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Features of uint8 images (N, H, W, 3) in batches: (pool (N, D), logits (N, K) or None)."""
    images = torch.as_tensor(np.asarray(images))
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 RGB (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    pools, logits = [], []
    for i in tqdm(range(0, len(images), batch_size), disable=not progress, desc="features", unit="batch"):
        pool, logit = feature_fn(images[i:i + batch_size].permute(0, 3, 1, 2).contiguous())  # (b, 3, H, W) in
        pools.append(pool.double().cpu())
        if logit is not None:
            logits.append(logit.double().cpu())
    return torch.cat(pools), (torch.cat(logits) if logits else None)


def statistics(features: Tensor) -> dict[str, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    if features.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 samples, got {features.shape[0]}")
    return fid_features_to_statistics(features.double().cpu())


def frechet_distance(stats_a: dict[str, np.ndarray], stats_b: dict[str, np.ndarray]) -> float:
    """Frechet distance of two Gaussians: ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    a = {k: np.asarray(v, dtype=np.float64) for k, v in stats_a.items()}
    b = {k: np.asarray(v, dtype=np.float64) for k, v in stats_b.items()}
    if a["mu"].shape != b["mu"].shape:
        raise ValueError(f"feature sizes differ: {a['mu'].shape[0]} and {b['mu'].shape[0]}")
    return fid_statistics_to_metric(a, b, verbose=False)[KEY_METRIC_FID]


def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """Mean and std over ``splits`` of exp(E KL(p(y|x) || p(y))) from logits (N, K)."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    out = isc_features_to_metric(logits.double().cpu(), splits=splits)
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]


def load_reference(path: str | Path, feature_fn: FeatureFn | None = None, **kw) -> dict[str, np.ndarray]:
    """Reference statistics from an .npz holding ``mu`` and ``sigma`` (the ADM reference
    batches do, as does ``save_reference``), or images ``arr_0`` whose features are computed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference file not found: {path}")
    try:
        with np.load(path) as ref:
            if "mu" in ref and "sigma" in ref:
                return {"mu": ref["mu"].astype(np.float64), "sigma": ref["sigma"].astype(np.float64)}
            if "arr_0" not in ref:
                raise ValueError(f"reference {path} holds neither mu/sigma nor images arr_0 (keys {list(ref)})")
            images = ref["arr_0"]
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"corrupt or truncated reference file {path}: {err}") from None
    if feature_fn is None:
        raise ValueError("a feature extractor is needed to compute reference statistics from images")
    return statistics(compute_features(images, feature_fn, **kw)[0])


def save_reference(path: str | Path, stats: dict[str, np.ndarray]) -> Path:
    """Save reference statistics mu, sigma to an .npz that ``load_reference`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mu=stats["mu"], sigma=stats["sigma"])
    return path


def evaluate_images(
    images: np.ndarray | Tensor,
    reference: dict[str, np.ndarray],
    feature_fn: FeatureFn,
    *,
    isc_splits: int = 10,
    batch_size: int = 100,
    progress: bool = True,
) -> dict[str, float | int]:
    """FID of uint8 images (N, H, W, 3) against reference statistics, and the Inception Score
    when the feature function gives logits."""
    pool, logits = compute_features(images, feature_fn, batch_size=batch_size, progress=progress)
    out = {"num_samples": int(pool.shape[0]), "fid": frechet_distance(statistics(pool), reference)}
    if logits is not None:
        out["inception_score"], out["inception_score_std"] = inception_score(logits, isc_splits)
    return out
