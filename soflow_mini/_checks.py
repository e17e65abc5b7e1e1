"""Input checks shared by the public entry points.

Every check raises ``ValueError`` naming the argument and the form it expects. The checks
that read tensor values (``times``, ``labels``) synchronise with the device, so the hot
training path (``SoFlow.loss``) draws its own valid inputs and skips them.
"""

from __future__ import annotations

from numbers import Real

import torch
from torch import Tensor


def batch_tensor(name: str, x: Tensor, *, min_dim: int = 2) -> int:
    """Check that ``x`` is a floating tensor of shape (B, ...) and return B."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, ...), got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimensions (B, ...), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    return x.shape[0]


def same_shape(name: str, x: Tensor, ref_name: str, ref: Tensor) -> None:
    if x.shape != ref.shape:
        raise ValueError(
            f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(x.shape)}"
        )


def times(name: str, t: Tensor | float, batch: int, like: Tensor) -> Tensor:
    """Return ``t`` as a (B,) tensor on ``like``'s device and dtype, checked to lie in [0, 1].

    A Python number means the same time for every sample; a tensor must already be (B,).
    """
    if isinstance(t, Real) and not isinstance(t, bool):
        t = torch.full((batch,), float(t), device=like.device, dtype=like.dtype)
    elif not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a float or a tensor of shape ({batch},), got {type(t).__name__}")
    if t.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},) (one time per sample), got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor of times in [0, 1], got dtype {t.dtype}")
    bad = ~((t >= 0) & (t <= 1))  # also catches NaN
    if bool(bad.any()):
        raise ValueError(f"{name} must lie in [0, 1], got {t[bad][0].item()!r}")
    return t.to(device=like.device, dtype=like.dtype)


def ordered(lo_name: str, lo: Tensor, hi_name: str, hi: Tensor, *, strict: bool = False) -> None:
    """Check lo <= hi (or lo < hi) for every sample."""
    bad = lo >= hi if strict else lo > hi
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        op = "<" if strict else "<="
        raise ValueError(
            f"{lo_name} must be {op} {hi_name} for every sample; sample {i} has "
            f"{lo_name}={lo[i].item():.6g}, {hi_name}={hi[i].item():.6g}"
        )


def labels(y: Tensor | None, batch: int, num_classes: int, *, name: str = "y") -> Tensor | None:
    """Check class labels: None, or an integer (B,) tensor in [0, num_classes] (num_classes = null)."""
    if y is None:
        return None
    if num_classes <= 0:
        raise ValueError(f"{name} must be None: the network is unconditional (num_classes=0)")
    if not isinstance(y, Tensor) or y.shape != (batch,):
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"{name} must be an integer tensor of shape ({batch},), got {shape}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if bool(((y < 0) | (y > num_classes)).any()):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}] ({num_classes} is the null class), "
            f"got values in [{int(y.min())}, {int(y.max())}]"
        )
    return y


def mask(name: str, m: Tensor | None, batch: int) -> Tensor | None:
    if m is None:
        return None
    if not isinstance(m, Tensor) or m.shape != (batch,) or m.dtype != torch.bool:
        shape = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
        raise ValueError(f"{name} must be a bool tensor of shape ({batch},), got {shape}")
    return m


def choice(name: str, value: str, options: dict) -> str:
    """Resolve a case-insensitive option name against a lookup table's keys."""
    key = str(value).strip().lower()
    if key not in options:
        raise ValueError(f"unknown {name} {value!r}; choose one of {sorted(options)}")
    return key
