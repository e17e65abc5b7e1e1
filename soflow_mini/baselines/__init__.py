"""Methods the book compares SoFlow with, on the same network contract."""

from .consistency import ConsistencyConfig, ConsistencyTraining
from .diffusion import Diffusion, DiffusionConfig, VPPath
from .flow_matching import FlowMatching, FlowMatchingConfig
from .meanflow import MeanFlow, MeanFlowConfig

__all__ = ["FlowMatching", "FlowMatchingConfig", "MeanFlow", "MeanFlowConfig"]
__all__ += ["Diffusion", "DiffusionConfig", "VPPath"]
__all__ += ["ConsistencyConfig", "ConsistencyTraining"]
