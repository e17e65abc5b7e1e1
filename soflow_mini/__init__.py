"""soflow_mini: Solution Flow Models (SoFlow) for one-step generation, compact and tested.

Convention: t = 0 is data, t = 1 is noise; f(x_t, t, s) maps time t to time s <= t.
"""

from .analytic import GaussianMixture, GaussianSolutionNet, integrate
from .baselines import (
    ConsistencyConfig, ConsistencyTraining, Diffusion, DiffusionConfig, FlowMatching, FlowMatchingConfig,
    MeanFlow, MeanFlowConfig,
)
from .coefficients import SolutionCoefficients, get_coefficients
from .config import LOSS_PRESETS, SoFlowConfig
from .data import TOY_DATASETS, sample_toy, toy_num_classes
from .ema import EMA
from .guidance import guidance_decay, guided_velocity
from .metrics import (
    NoiseBand, SampleQuality, data_floor, energy_distance, noise_band, sample_quality, sliced_wasserstein2,
)
from .nets import DIT_SIZES, DiT, SongUNet, ToyMLP, build_dit, build_unet, load_official, load_official_dit
from .paths import NoisingPath, get_path
from .soflow import SoFlow
from .time_sampling import intermediate_time, l_ratio, logit_normal, sample_consistency_times
from .toy_training import History, train_toy

__version__ = "0.1.0"

__all__ = [
    "ConsistencyConfig", "ConsistencyTraining", "Diffusion", "DiffusionConfig",
    "DIT_SIZES", "DiT", "EMA", "FlowMatching", "FlowMatchingConfig", "GaussianMixture",
    "GaussianSolutionNet", "LOSS_PRESETS", "MeanFlow", "MeanFlowConfig", "NoisingPath", "SampleQuality",
    "SoFlow", "SoFlowConfig", "SolutionCoefficients", "SongUNet", "TOY_DATASETS", "ToyMLP", "build_dit", "build_unet",
    "NoiseBand", "data_floor", "energy_distance", "noise_band", "get_coefficients", "get_path", "guidance_decay",
    "guided_velocity", "integrate", "intermediate_time", "l_ratio", "load_official", "load_official_dit",
    "logit_normal", "sample_consistency_times", "sample_quality", "sample_toy",
    "sliced_wasserstein2", "toy_num_classes", "History", "train_toy",
]
