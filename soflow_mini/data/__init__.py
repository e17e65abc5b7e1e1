"""Data: 2D toys for CPU demos (image data sets live beside them) and the CIFAR-10 augmentation."""

from .augment import AugmentDraw, GeometricAugment, augment
from .cifar10 import load_cifar10
from .digits import load_digits_images
from .latents import LatentDataset, prepare_latents
from .toy2d import TOY_DATASETS, sample_toy, toy_num_classes

__all__ = [
    "AugmentDraw", "GeometricAugment", "LatentDataset", "augment", "TOY_DATASETS", "load_cifar10", "load_digits_images", "prepare_latents", "sample_toy",
    "toy_num_classes",
]
