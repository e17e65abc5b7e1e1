"""Networks with the contract net(x, t, s, y) -> F (shape of x): DiT, the CIFAR-10 U-Net
(which also takes augmentation labels), the toy MLP, and loaders of the authors' checkpoints."""

from .convert import convert_official_state_dict, detect_architecture, load_official, load_official_dit, official_state_dict
from .dit import DIT_SIZES, DiT, build_dit
from .embeddings import LabelEmbedder, TimestepEmbedder, sinusoidal_embedding
from .mlp import ToyMLP
from .unet import UNET_CONFIGS, SongUNet, UNetConfig, build_unet

__all__ = [
    "DIT_SIZES", "DiT", "LabelEmbedder", "SongUNet", "TimestepEmbedder", "ToyMLP", "UNET_CONFIGS", "UNetConfig",
    "build_dit", "build_unet",
    "convert_official_state_dict", "detect_architecture", "load_official", "load_official_dit", "official_state_dict",
    "sinusoidal_embedding",
]
