"""Methods the book compares SoFlow with, on the same network contract."""

from .flow_matching import FlowMatching, FlowMatchingConfig
from .meanflow import MeanFlow, MeanFlowConfig

__all__ = ["FlowMatching", "FlowMatchingConfig", "MeanFlow", "MeanFlowConfig"]
