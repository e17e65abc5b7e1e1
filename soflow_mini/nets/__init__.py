"""Networks with the contract net(x, t, s, y) -> F (shape of x)."""

from .convert import convert_official_state_dict, load_official_dit
from .dit import DIT_SIZES, DiT, build_dit
from .embeddings import LabelEmbedder, TimestepEmbedder, sinusoidal_embedding
from .mlp import ToyMLP

__all__ = [
    "DIT_SIZES", "DiT", "LabelEmbedder", "TimestepEmbedder", "ToyMLP", "build_dit",
    "convert_official_state_dict", "load_official_dit", "sinusoidal_embedding",
]
