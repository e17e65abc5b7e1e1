"""Data: 2D toys for CPU demos (image data sets live beside them)."""

from .toy2d import TOY_DATASETS, sample_toy, toy_num_classes

__all__ = ["TOY_DATASETS", "sample_toy", "toy_num_classes"]
