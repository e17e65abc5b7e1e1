"""soflow_mini: Solution Flow Models (SoFlow) for one-step generation, compact and tested.

Convention: t = 0 is data, t = 1 is noise; f(x_t, t, s) maps time t to time s <= t.

Plugging in a network: every model (SoFlow, FlowMatching, MeanFlow, ConsistencyTraining,
Diffusion) wraps an ``nn.Module`` with the contract ``net(x, t, s, y) -> F``: x (B, ...),
times t and s (B,), labels y (B,) or None, and F of the shape of x (checked on every call).
A class-conditional net has an attribute ``num_classes = K``: labels run 0..K-1 and y=None
asks for the unconditional prediction (the null class K, which only the models pass on).
An unconditional net takes y=None and ignores it. Any such net trains with
``soflow_mini.train.Trainer`` on data with ``spec``, ``__len__`` and ``batch(index, generator)``
(``soflow_mini.train.ImageData`` holds images in memory).

The names below are imported on first use, so ``import soflow_mini`` (and the command line's
start-up) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["GaussianMixture", "GaussianSolutionNet", "integrate"], "analytic"),
    **dict.fromkeys(["ConsistencyConfig", "ConsistencyTraining", "Diffusion", "DiffusionConfig", "FlowMatching",
                     "FlowMatchingConfig", "MeanFlow", "MeanFlowConfig"], "baselines"),
    **dict.fromkeys(["SolutionCoefficients", "get_coefficients"], "coefficients"),
    **dict.fromkeys(["LOSS_PRESETS", "SoFlowConfig"], "config"),
    **dict.fromkeys(["TOY_DATASETS", "sample_toy", "toy_num_classes"], "data"),
    "EMA": "ema",
    **dict.fromkeys(["guidance_decay", "guided_velocity"], "guidance"),
    **dict.fromkeys(["NoiseBand", "SampleQuality", "data_floor", "energy_distance", "noise_band", "precision_recall",
                     "sample_quality", "sliced_wasserstein2", "straightness"],
                    "metrics"),
    **dict.fromkeys(["DIT_SIZES", "DiT", "SongUNet", "ToyMLP", "build_dit", "build_unet", "load_official",
                     "load_official_dit"], "nets"),
    **dict.fromkeys(["NoisingPath", "get_path"], "paths"),
    "SoFlow": "soflow",
    **dict.fromkeys(["intermediate_time", "l_ratio", "logit_normal", "sample_consistency_times"], "time_sampling"),
    **dict.fromkeys(["History", "train_toy"], "toy_training"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
