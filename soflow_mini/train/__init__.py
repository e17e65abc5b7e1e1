"""Training that scales from a CPU toy to ImageNet-256 on many GPUs: typed run configs and
presets, a generic trainer, atomic checkpoints, torchrun support."""

from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from .config import (
    PRESETS, RUN_PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig, build_config, from_authors_yaml,
)
from .data import DataSpec, ImageData, IndexStream, PointData, build_data
from .distributed import DistInfo, init_distributed
from .run import METHODS, build_model, build_net, export_model, load_model, load_official, sample_kwargs, train
from .trainer import NonFiniteLoss, Trainer, TrainResult, read_log

__all__ = [
    "DataConfig", "DataSpec", "DistInfo", "ImageData", "IndexStream", "METHODS", "ModelConfig", "NonFiniteLoss", "PRESETS",
    "RUN_PRESETS", "RunConfig", "TrainConfig", "TrainResult", "Trainer", "build_config", "build_data", "build_model",
    "build_net", "export_model", "from_authors_yaml", "init_distributed", "latest_checkpoint", "list_checkpoints",
    "load_checkpoint", "load_model", "load_official", "PointData", "read_log", "sample_kwargs", "save_checkpoint", "train",
]
