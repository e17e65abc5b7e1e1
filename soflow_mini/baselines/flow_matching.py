"""Flow matching (Lipman et al. 2023; Liu et al. 2023): regress v_theta(x_t, t) on v_t, then
integrate the ODE dx/dt = v from t = 1 (noise) to t = 0 (data) with Euler or Heun steps.

Uses the same network contract as SoFlow, net(x, t, s, y), evaluated at s = t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .. import _checks
from ..paths import NoisingType, get_path
from ..time_sampling import logit_normal

Solver = Literal["euler", "heun"]
SOLVERS = ("euler", "heun")


@dataclass
class FlowMatchingConfig:
    """Logit-normal training times (time_mean, time_std); label dropout for guidance."""

    noising_type: NoisingType = "linear"
    time_mean: float = 0.0
    time_std: float = 1.0
    cfg_drop_rate: float = 0.0

    def __post_init__(self) -> None:
        self.noising_type = get_path(self.noising_type).name
        if self.time_std <= 0:
            raise ValueError(f"time_std must be positive, got {self.time_std}")
        if not 0 <= self.cfg_drop_rate <= 1:
            raise ValueError(f"cfg_drop_rate must lie in [0, 1], got {self.cfg_drop_rate}")


class FlowMatching(nn.Module):
    """Flow matching around a network net(x, t, s, y) evaluated at s = t: velocity, loss, ODE sampling."""

    def __init__(self, net: nn.Module, config: FlowMatchingConfig | None = None):
        super().__init__()
        self.net = net
        self.config = config if config is not None else FlowMatchingConfig()
        self.path = get_path(self.config.noising_type)
        self.num_classes = int(getattr(net, "num_classes", 0) or 0)

    def velocity(self, x_t: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """v_theta(x_t, t); t (B,) or a float."""
        B = _checks.batch_tensor("x_t", x_t)
        t = _checks.times("t", t, B, x_t)
        y = _checks.labels(y, B, self.num_classes)
        return self.net(x_t, t, t, y)

    def loss(
        self, x0: Tensor, y: Tensor | None = None, *, step: int = 0, total_steps: int = 1,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean squared error between v_theta(x_t, t) and v_t; step arguments are unused."""
        B = _checks.batch_tensor("x0", x0)
        draw = dict(device=x0.device, dtype=x0.dtype, generator=generator)
        noise = torch.randn(x0.shape, **draw)
        t = logit_normal(B, self.config.time_mean, self.config.time_std, **draw)
        if y is not None and self.config.cfg_drop_rate > 0:
            drop = torch.rand(B, device=x0.device, generator=generator) < self.config.cfg_drop_rate
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        x_t, v_t = self.path.interpolate(x0, noise, t)
        mse = (self.net(x_t, t, t, y) - v_t).flatten(1).pow(2).mean(1)  # (B,)
        loss = mse.mean()
        return loss, {"loss": loss.detach(), "fm_mse": loss.detach()}

    forward = loss

    def _guided_velocity(self, x: Tensor, t: Tensor, y: Tensor | None, cfg_scale: float) -> Tensor:
        if y is None or cfg_scale == 1.0:
            return self.net(x, t, t, y)
        # Inference-time guidance: conditional and unconditional passes in one batch.
        null = torch.full_like(y, self.num_classes)
        v_c, v_u = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        return v_u + cfg_scale * (v_c - v_u)

    @torch.no_grad()
    def sample(
        self, noise: Tensor, y: Tensor | None = None, *, steps: int = 100, solver: Solver = "euler",
        cfg_scale: float = 1.0,
    ) -> Tensor:
        """Integrate from t = 1 to t = 0 on a uniform grid. Network evaluations: ``steps`` for
        Euler, 2 * ``steps`` for Heun, each doubled in batch size when cfg_scale != 1."""
        B = _checks.batch_tensor("noise", noise)
        y = _checks.labels(y, B, self.num_classes)
        solver = _checks.choice("solver", solver, dict.fromkeys(SOLVERS))
        if y is not None and cfg_scale != 1.0 and self.config.cfg_drop_rate == 0:
            raise ValueError(
                f"cfg_scale {cfg_scale} needs a model trained with cfg_drop_rate > 0: "
                "otherwise the unconditional velocity was never trained"
            )
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        x = noise
        grid = torch.linspace(1.0, 0.0, steps + 1, device=noise.device, dtype=noise.dtype)
        for t_now, t_next in zip(grid[:-1], grid[1:]):
            t = t_now.expand(B)
            dt = t_next - t_now  # negative: towards data
            v = self._guided_velocity(x, t, y, cfg_scale)
            x_euler = x + dt * v
            if solver == "euler":
                x = x_euler
            else:
                v_next = self._guided_velocity(x_euler, t_next.expand(B), y, cfg_scale)
                x = x + dt * 0.5 * (v + v_next)
        return x
