"""Multi-process training through torchrun: process-group set-up, device choice, and the few
collectives the trainer needs. A plain ``python`` run is a world of one process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto": CUDA (this process's GPU under torchrun), else MPS, else CPU; otherwise any
    torch device string. A bare accelerator type ("cuda") gets this process's index."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'auto' or a torch device such as 'cpu' or 'cuda:0', got {name!r}") from None
    if device.type != "cpu" and device.index is None:
        device = torch.device(device.type, local_rank)
    if device.type not in ("cpu", "meta"):
        _check_available(device, name)
    return device


def _check_available(device: torch.device, name: str) -> None:
    """ValueError in one line when ``device`` does not exist on this machine."""
    try:
        module = torch.get_device_module(device.type)
    except (RuntimeError, AttributeError, ValueError):
        raise ValueError(f"device {name!r}: this torch build has no {device.type!r} support; "
                         "use 'cpu' or 'auto'") from None
    if hasattr(module, "is_available") and not module.is_available():
        raise ValueError(f"device {name!r} is not available on this machine (torch.{device.type}.is_available() "
                         "is False); use 'cpu' or 'auto'")
    count = module.device_count() if hasattr(module, "device_count") else None
    if count is not None and device.index is not None and device.index >= count:
        raise ValueError(f"device {str(device)!r} does not exist: this machine has {count} {device.type} device(s)")


def init_distributed(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo otherwise)."""
    info = DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )
    device = resolve_device(device_name, info.local_rank)
    module = torch.get_device_module(device.type) if device.type != "cpu" else None
    if module is not None and hasattr(module, "set_device"):
        module.set_device(device)  # later calls on "the current device" mean this process's
    if info.active and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce(t: torch.Tensor, op: str = "mean") -> torch.Tensor:
    """Reduce ``t`` in place over processes ("mean", "sum" or "max"); a no-op alone."""
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        if op == "mean":
            t /= dist.get_world_size()
    return t


def all_gather_objects(obj: Any) -> list[Any]:
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
