"""Sampling to files, FID / Inception Score, digits precision / recall, and 2D sample metrics."""

from .fid import (
    compute_features, evaluate_images, frechet_distance, inception_features, inception_score, load_reference,
    save_reference, statistics,
)
from .digits import evaluate_digits
from .generate import generate, grid_writer, picture, resolve_labels, to_images, write_samples
from .points import evaluate_points
from .samples import image_grid, points_image, save_npz, save_png, to_uint8

__all__ = [
    "compute_features", "evaluate_digits", "evaluate_images", "evaluate_points", "frechet_distance", "generate", "grid_writer",
    "image_grid", "inception_features", "inception_score", "load_reference", "picture", "points_image",
    "resolve_labels", "save_npz", "save_png", "save_reference", "statistics", "to_images", "to_uint8",
    "write_samples",
]
