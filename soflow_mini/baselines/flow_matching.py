"""Flow matching (Lipman et al. 2023; Liu et al. 2023): regress v_theta(x_t, t) on v_t, then
integrate the ODE dx/dt = v from t = 1 (noise) to t = 0 (data) with Euler, Heun, midpoint or
RK4 steps on a uniform or power time grid.

Uses the same network contract as SoFlow, net(x, t, s, y), evaluated at s = t.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .. import _checks
from ..paths import NoisingType, get_path
from ..time_sampling import logit_normal

Solver = Literal["euler", "heun", "midpoint", "rk4"]
SOLVERS = ("euler", "heun", "midpoint", "rk4")
# Network evaluations per step of each solver (times 2 in batch size under inference guidance).
EVALS_PER_STEP = {"euler": 1, "heun": 2, "midpoint": 2, "rk4": 4}


def time_grid(steps: int, power: float = 1.0, **like) -> Tensor:
    """Times 1 = t_0 > t_1 > ... > t_steps = 0 with t_i = (1 - i / steps) ** power.

    power = 1 is the uniform grid; power > 1 puts the small steps near the data (t = 0),
    where the marginal velocity of multi-modal data bends the most.
    """
    if not power > 0:
        raise ValueError(f"grid power must be positive, got {power!r}")
    return torch.linspace(1.0, 0.0, steps + 1, **like) ** power


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
    """Flow matching on the network contract ``net(x, t, s, y) -> F`` (shape of x), read at
    s = t as the velocity v_theta(x_t, t). Labels run 0..net.num_classes - 1; y=None is the
    unconditional prediction.

    Example::

        model = FlowMatching(ToyMLP())
        loss, logs = model.loss(x0)                            # x0 (B, 2)
        x = model.sample(torch.randn(1000, 2), steps=100)      # Euler, 100 evaluations
    """

    def __init__(self, net: nn.Module, config: FlowMatchingConfig | None = None):
        """Wrap ``net`` with the training settings ``config`` (default FlowMatchingConfig())."""
        _checks.network(net, owner="FlowMatching")
        super().__init__()
        self.net = net
        self.config = config if config is not None else FlowMatchingConfig()
        self.path = get_path(self.config.noising_type)
        self.num_classes = int(getattr(net, "num_classes", 0) or 0)

    def _F(self, x_t: Tensor, t: Tensor, s: Tensor, y: Tensor | None) -> Tensor:
        """The network output, checked to have the shape of x_t."""
        return _checks.output("net", self.net(x_t, t, s, y), x_t)  # (B, ...)

    def velocity(self, x_t: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """v_theta(x_t, t); t (B,) or a float."""
        B = _checks.batch_tensor("x_t", x_t)
        t = _checks.times("t", t, B, x_t)
        y = _checks.labels(y, B, self.num_classes)
        return self._F(x_t, t, t, y)

    def loss(
        self, x0: Tensor, y: Tensor | None = None, *, step: int = 0, total_steps: int = 1,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean squared error between v_theta(x_t, t) and v_t; step arguments are unused."""
        B = _checks.batch_tensor("x0", x0)
        y = _checks.labels(y, B, self.num_classes)
        draw = dict(device=x0.device, dtype=x0.dtype, generator=generator)
        noise = torch.randn(x0.shape, **draw)
        t = logit_normal(B, self.config.time_mean, self.config.time_std, **draw)
        if y is not None and self.config.cfg_drop_rate > 0:
            drop = torch.rand(B, device=x0.device, generator=generator) < self.config.cfg_drop_rate
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        x_t, v_t = self.path.interpolate(x0, noise, t)
        mse = (self._F(x_t, t, t, y) - v_t).flatten(1).pow(2).mean(1)  # (B,)
        loss = mse.mean()
        return loss, {"loss": loss.detach(), "fm_mse": loss.detach()}

    forward = loss

    def _guided_velocity(self, x: Tensor, t: Tensor, y: Tensor | None, cfg_scale: float) -> Tensor:
        if y is None or cfg_scale == 1.0:
            return self._F(x, t, t, y)
        # Inference-time guidance: conditional and unconditional passes in one batch.
        null = torch.full_like(y, self.num_classes)
        x2 = torch.cat([x, x])  # (2B, ...)
        v_c, v_u = self._F(x2, torch.cat([t, t]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        return v_u + cfg_scale * (v_c - v_u)

    @torch.no_grad()
    @_checks.in_eval_mode
    def sample(
        self, noise: Tensor, y: Tensor | None = None, *, steps: int = 100, solver: Solver = "euler",
        cfg_scale: float = 1.0, grid_power: float = 1.0,
    ) -> Tensor:
        """Integrate from t = 1 to t = 0 in ``steps`` steps of ``solver`` on ``time_grid``.

        Network evaluations: ``steps * EVALS_PER_STEP[solver]`` (Euler 1, Heun and midpoint 2,
        RK4 4 per step), each doubled in batch size when cfg_scale != 1.
        """
        for x in self._states(noise, y, steps, solver, cfg_scale, grid_power):
            pass
        return x

    @torch.no_grad()
    @_checks.in_eval_mode
    def trajectory(
        self, noise: Tensor, y: Tensor | None = None, *, steps: int = 100, solver: Solver = "euler",
        cfg_scale: float = 1.0, grid_power: float = 1.0,
    ) -> Tensor:
        """The path ``sample`` follows: the state at every time of the grid, noise first,
        shape ``(steps + 1, *noise.shape)``; the last entry is ``sample``'s result."""
        return torch.stack(list(self._states(noise, y, steps, solver, cfg_scale, grid_power)))

    def _states(
        self, noise: Tensor, y: Tensor | None, steps: int, solver: Solver, cfg_scale: float, grid_power: float,
    ) -> Iterator[Tensor]:
        """Yield the noise, then the state after each solver step from t = 1 to t = 0."""
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
        yield x
        grid = time_grid(steps, grid_power, device=noise.device, dtype=noise.dtype)

        def v(x_: Tensor, t_: Tensor) -> Tensor:
            return self._guided_velocity(x_, t_.expand(B), y, cfg_scale)

        for t_now, t_next in zip(grid[:-1], grid[1:]):
            dt = t_next - t_now  # negative: towards data
            k1 = v(x, t_now)
            if solver == "euler":
                x = x + dt * k1
            elif solver == "heun":
                x = x + dt * 0.5 * (k1 + v(x + dt * k1, t_next))
            elif solver == "midpoint":
                x = x + dt * v(x + 0.5 * dt * k1, t_now + 0.5 * dt)
            else:  # classical fourth-order Runge-Kutta
                k2 = v(x + 0.5 * dt * k1, t_now + 0.5 * dt)
                k3 = v(x + 0.5 * dt * k2, t_now + 0.5 * dt)
                k4 = v(x + dt * k3, t_next)
                x = x + dt * (k1 + 2 * k2 + 2 * k3 + k4) / 6
            yield x
