"""MeanFlow (Geng et al. 2025): learn the average velocity u(z_t, r, t) over [r, t].

Identity: u = v - (t - r) du/dt, with the total derivative du/dt = v . grad_z u + d_t u
computed by a Jacobian-vector product (torch.func.jvp) with tangent (v, 0, 1).
In the shared contract, u(z, r, t) = net(z, t, r, y): from time t to the earlier time r,
so that z_r = z_t - (t - r) u is SoFlow's Euler parameterization.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from .. import _checks
from ..paths import get_path
from ..time_sampling import logit_normal


@dataclass
class MeanFlowConfig:
    """(t, r) ~ logit-normal, a fraction ``r_equals_t`` of samples with r = t; adaptive weight."""

    time_mean: float = -0.4
    time_std: float = 1.0
    r_equals_t: float = 0.75
    p: float = 1.0
    eps: float = 1e-2

    def __post_init__(self) -> None:
        if self.time_std <= 0:
            raise ValueError(f"time_std must be positive, got {self.time_std}")
        if not 0 <= self.r_equals_t <= 1:
            raise ValueError(f"r_equals_t must lie in [0, 1], got {self.r_equals_t}")
        if self.p < 0:
            raise ValueError(f"p must be >= 0, got {self.p}")
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")


@contextlib.contextmanager
def _jvp_context(device: torch.device):
    """Settings under which the DiT's forward pass supports forward-mode AD.

    The fused attention kernels (flash, memory-efficient, cuDNN) have no forward-mode AD
    rule, so F.scaled_dot_product_attention runs on the math backend: part of the price of
    the JVP for attention nets; nets without attention are unaffected. Under CUDA bf16
    autocast the JVP of that backend's softmax fails on mismatched dtypes (torch 2.11 on an
    H200), so there the JVP pass runs in fp32: MeanFlow trains, at fp32 cost for that pass.
    """
    fp32 = device.type == "cuda" and torch.is_autocast_enabled("cuda")
    with warnings.catch_warnings(), sdpa_kernel(SDPBackend.MATH), \
            (torch.autocast("cuda", enabled=False) if fp32 else contextlib.nullcontext()):
        # torch's first forward-AD call warns about its own internals
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        yield


class MeanFlow(nn.Module):
    """MeanFlow around a network net(z, t, r, y), the average velocity over [r, t]: JVP loss, sampling."""

    def __init__(self, net: nn.Module, config: MeanFlowConfig | None = None):
        super().__init__()
        self.net = net
        self.config = config if config is not None else MeanFlowConfig()
        self.path = get_path("linear")
        self.num_classes = int(getattr(net, "num_classes", 0) or 0)

    def sample_times(self, n: int, **draw) -> tuple[Tensor, Tensor]:
        """(t, r) with r <= t; a fraction r_equals_t of the pairs has r = t."""
        config = self.config
        a = logit_normal(n, config.time_mean, config.time_std, **draw)
        b = logit_normal(n, config.time_mean, config.time_std, **draw)
        t, r = torch.maximum(a, b), torch.minimum(a, b)
        n_equal = int(config.r_equals_t * n)
        r = torch.cat([t[:n_equal], r[n_equal:]])
        return t, r

    def target(self, z_t: Tensor, v_t: Tensor, t: Tensor, r: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        """Return (u, u_tgt): the prediction u(z_t, r, t) with gradient, and the detached
        target v - (t - r) du/dt from one JVP."""

        def u_fn(z: Tensor, t_: Tensor, r_: Tensor) -> Tensor:
            return self.net(z, t_, r_, y)

        with _jvp_context(z_t.device):
            u, dudt = jvp(u_fn, (z_t, t, r), (v_t, torch.ones_like(t), torch.zeros_like(r)))
        gap = (t - r).reshape(-1, *([1] * (z_t.dim() - 1)))
        return u, (v_t - gap * dudt).detach()

    def loss(
        self, x0: Tensor, y: Tensor | None = None, *, step: int = 0, total_steps: int = 1,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Adaptive-weighted MeanFlow loss; step arguments are unused."""
        B = _checks.batch_tensor("x0", x0)
        draw = dict(device=x0.device, dtype=x0.dtype, generator=generator)
        noise = torch.randn(x0.shape, **draw)
        t, r = self.sample_times(B, **draw)
        z_t, v_t = self.path.interpolate(x0, noise, t)
        u, u_tgt = self.target(z_t, v_t, t, r, y)
        mse = (u - u_tgt).flatten(1).pow(2).mean(1)  # (B,)
        w = 1.0 / (mse.detach() + self.config.eps) ** self.config.p
        loss = (w * mse).mean()
        return loss, {"loss": loss.detach(), "mf_mse": mse.detach().mean(), "mf_weight": w.mean()}

    forward = loss

    @torch.no_grad()
    def sample(self, noise: Tensor, y: Tensor | None = None, *, nfe: int = 1) -> Tensor:
        """z_r = z_t - (t - r) u(z_t, r, t) on a uniform grid from 1 to 0 in ``nfe`` steps."""
        B = _checks.batch_tensor("noise", noise)
        y = _checks.labels(y, B, self.num_classes)
        if not isinstance(nfe, int) or nfe < 1:
            raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
        z = noise
        grid = torch.linspace(1.0, 0.0, nfe + 1, device=noise.device, dtype=noise.dtype)
        for t_now, t_next in zip(grid[:-1], grid[1:]):
            z = z - (t_now - t_next) * self.net(z, t_now.expand(B), t_next.expand(B), y)
        return z
