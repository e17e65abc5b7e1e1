"""Input checks shared by the public entry points.

Every check raises ``ValueError`` naming the argument and the form it expects. The checks
that read tensor values (``times``, ``labels``) synchronise with the device, so the hot
training path (``SoFlow.loss``) draws its own valid inputs and skips them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from numbers import Real

import torch
from torch import Tensor, nn

NET_CONTRACT = "net(x, t, s, y) -> F with F.shape == x.shape (t, s of shape (B,), y labels or None)"


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
    """Check that ``x`` has the shape of ``ref``."""
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
        raise ValueError(f"{name} must lie in [0, 1], got {number(t[bad][0].item())}")
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


def labels(
    y: Tensor | None, batch: int, num_classes: int, *, name: str = "y", allow_null: bool = False
) -> Tensor | None:
    """Check class labels: None, or an integer (B,) tensor in [0, num_classes - 1].

    Label ``num_classes`` is the null class ("no label") of classifier-free guidance; it is
    refused unless ``allow_null``: callers ask for unconditional predictions with y=None
    (the whole batch) or with a cfg_mask (per sample), never with a label value, so labels
    that run 1..K are caught instead of training class K as unconditional.
    """
    if y is None:
        return None
    if num_classes <= 0:
        raise ValueError(
            f"{name} must be None: the network is unconditional (its num_classes attribute is 0 or missing); "
            "for a class-conditional network set net.num_classes = K (labels 0..K-1)"
        )
    if not isinstance(y, Tensor) or y.shape != (batch,):
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"{name} must be an integer tensor of shape ({batch},), got {shape}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.numel() and y.device.type != "meta":  # meta tensors (shape-only counts) hold no values
        lo, hi = (int(v) for v in torch.aminmax(y))
        top = num_classes if allow_null else num_classes - 1
        if lo < 0 or hi > top:
            null = f" ({num_classes} is the null class)" if allow_null else (
                f"; {num_classes} is the null class: use y=None or cfg_mask for unconditional rows"
                if hi == num_classes else "")
            raise ValueError(f"{name} must hold class labels in [0, {top}], got values in [{lo}, {hi}]{null}")
    return y


def mask(name: str, m: Tensor | None, batch: int) -> Tensor | None:
    """Check a per-sample bool mask: None or a bool (B,) tensor."""
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


def number(value: float) -> str:
    """A float as a short string: 6 significant digits, so float32 values read as typed
    (-0.1, not -0.10000000149011612)."""
    return f"{float(value):.6g}"


def output(name: str, F: Tensor, x: Tensor) -> Tensor:
    """Check a network output against the contract: a tensor with the shape of its input x.

    A (B, 1) output for x (B, 2) would otherwise broadcast silently through the losses.
    """
    if not isinstance(F, Tensor):
        raise ValueError(f"{name} returned {type(F).__name__}; the contract is {NET_CONTRACT}")
    if F.shape != x.shape:
        raise ValueError(
            f"{name} returned shape {tuple(F.shape)} for x of shape {tuple(x.shape)}; the contract is {NET_CONTRACT}"
        )
    return F


def network(net: nn.Module, *, owner: str) -> None:
    """Check, when a model is built, that ``net`` is a module whose forward takes (x, t, s, y).

    Signatures that cannot be read (C extensions, wrappers taking *args) pass unchecked.
    """
    if not isinstance(net, nn.Module):
        raise ValueError(f"{owner} needs an nn.Module network with the contract {NET_CONTRACT}; "
                         f"got {type(net).__name__}")
    try:
        signature = inspect.signature(net.forward)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(None, None, None, None)
    except TypeError:
        raise ValueError(
            f"{owner}: {type(net).__name__}.forward{signature} cannot be called as net(x, t, s, y); "
            f"the contract is {NET_CONTRACT} (an unconditional net takes y=None and ignores it)"
        ) from None


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Run a block with ``module`` in eval mode, then give it back in the mode it had."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def in_eval_mode(method):
    """Decorate a model's method (``sample``) to run in eval mode and restore the mode it found."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with eval_mode(self):
            return method(self, *args, **kwargs)

    return wrapper
