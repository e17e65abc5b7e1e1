"""Consistency training (Song et al. 2023) in the recipe of improved consistency training, iCT
(Song and Dhariwal 2023), on this library's time convention and network contract.

A consistency model learns f(x_t, t): the end point at t = 0 (data) of the probability-flow
trajectory through x_t. With the network contract net(x, t, s, y) evaluated at s = 0,

    f_theta(x_t, t) = a(t, 0) x_t + b(t, 0) F_theta(x_t, t, 0)        (euler: x_t - t F)

which is SoFlow's solution function with its target time fixed at s = 0; the boundary
condition f_theta(x, 0) = x holds for any network, as EDM's c_skip / c_out do in the original
papers. Training is discrete-time: of a grid 0 < t_1 < ... < t_N = 1, draw an adjacent pair
t_i < t_{i+1}, one data point x0 and one noise x1, and minimise

    lambda_i d(f_theta(x_{t_{i+1}}, t_{i+1}), sg[f_theta(x_{t_i}, t_i)]),    lambda_i = 1 / (t_{i+1} - t_i),

where both points lie on the same straight path x_t = alpha(t) x0 + beta(t) x1, d is the
pseudo-Huber distance sqrt(|a - b|^2 + c^2) - c and sg is stop-gradient.

iCT ingredients kept: the target is the student itself under stop-gradient (no EMA teacher);
pseudo-Huber loss with c = 0.00054 sqrt(dim); Karras grid in the noise level sigma with
rho = 7, sigma in [0.002, 80]; grid pairs drawn from a discretised log-normal in sigma
(P_mean = -1.1, P_std = 2.0); the number of grid points doubles in stages, N(k) from 11 to 1281.
Adaptations to t in [0, 1]: sigma = beta(t) / alpha(t) is EDM's noise level of the rescaled
state x_t / alpha(t) = x0 + sigma x1, so the grid is mapped to t = sigma / (1 + sigma) on the
linear path; its top point sigma_max is moved to sigma = inf (t = 1, pure noise), so that
sampling starts from exactly N(0, I); the weight 1 / (sigma_{i+1} - sigma_i) becomes
1 / (t_{i+1} - t_i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .. import _checks
from ..coefficients import CoefficientType, get_coefficients
from ..paths import NoisingType, expand_like, get_path

Distance = Literal["pseudo_huber", "squared"]
DISTANCES = ("pseudo_huber", "squared")


def _t_linear(sigma: Tensor) -> Tensor:
    return 1 - 1 / (1 + sigma)  # sigma / (1 + sigma), and 1 at sigma = inf


def _t_trig(sigma: Tensor) -> Tensor:
    return torch.atan(sigma) * (2 / math.pi)  # sigma = tan(pi t / 2)


# noise level sigma = beta(t) / alpha(t) -> time t, per noising path
T_FROM_SIGMA = {"linear": _t_linear, "trig": _t_trig}


@dataclass
class ConsistencyConfig:
    """iCT's published CIFAR-10 setting, on the linear path with euler coefficients.

    scales_init, scales_end: the curriculum's s0, s1 (grid sizes N from s0 + 1 to s1 + 1).
    sigma_min, sigma_max, rho: Karras grid in the noise level sigma.
    p_mean, p_std: log-normal over sigma from which the grid pairs are drawn.
    distance: "pseudo_huber" (iCT) or "squared"; huber_c None means 0.00054 sqrt(dim).
    """

    noising_type: NoisingType = "linear"
    coefficient_type: CoefficientType = "euler"
    scales_init: int = 10
    scales_end: int = 1280
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    p_mean: float = -1.1
    p_std: float = 2.0
    distance: Distance = "pseudo_huber"
    huber_c: float | None = None

    def __post_init__(self) -> None:
        self.noising_type = get_path(self.noising_type).name
        self.coefficient_type = get_coefficients(self.coefficient_type).name
        self.distance = _checks.choice("distance", self.distance, dict.fromkeys(DISTANCES))
        if not 1 <= self.scales_init <= self.scales_end:
            raise ValueError(f"need 1 <= scales_init <= scales_end, got {self.scales_init}, {self.scales_end}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.rho <= 0 or self.p_std <= 0:
            raise ValueError(f"rho and p_std must be positive, got {self.rho}, {self.p_std}")
        if self.huber_c is not None and self.huber_c <= 0:
            raise ValueError(f"huber_c must be None or positive, got {self.huber_c}")


# ---------------------------------------------------------------------------- discretisation
def num_scales(step: int, total_steps: int, scales_init: int = 10, scales_end: int = 1280) -> int:
    """iCT's exponential curriculum: N(k) = min(s0 2^floor(k / K'), s1) + 1 grid points at step k,
    K' = floor(K / (floor(log2(s1 / s0)) + 1)): N doubles in equal stages from s0 + 1 to s1 + 1."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps}")
    stages = int(math.floor(math.log2(scales_end / scales_init))) + 1
    stage_len = max(total_steps // stages, 1)
    return min(scales_init * 2 ** (max(step, 0) // stage_len), scales_end) + 1


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """n noise levels sigma_1 < ... < sigma_n spaced uniformly in sigma^(1 / rho); (n,) float64."""
    if n < 2:
        raise ValueError(f"a grid needs at least 2 points, got {n}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + ramp * (hi - lo)) ** rho


def time_grid(n: int, config: ConsistencyConfig) -> tuple[Tensor, Tensor]:
    """(sigmas, times), each (n,) float64: the Karras grid with its top moved to sigma = inf,
    and the times t_1 < ... < t_n = 1 of those noise levels on the configured path."""
    sigmas = karras_sigmas(n, config.sigma_min, config.sigma_max, config.rho)
    sigmas[-1] = math.inf
    return sigmas, T_FROM_SIGMA[config.noising_type](sigmas)


def pair_probabilities(sigmas: Tensor, p_mean: float, p_std: float) -> Tensor:
    """p(i) of the pair (sigma_i, sigma_{i+1}): the log-normal mass between them; (n - 1,)."""
    cdf = torch.erf((torch.log(sigmas) - p_mean) / (math.sqrt(2) * p_std))  # erf(inf) = 1
    mass = cdf[1:] - cdf[:-1]
    return mass / mass.sum()


# ---------------------------------------------------------------------------- the model
class ConsistencyTraining(nn.Module):
    """Consistency model trained from data alone (no teacher) on the contract
    ``net(x, t, s, y) -> F`` (shape of x), evaluated at s = 0. Labels run
    0..net.num_classes - 1; y=None is the unconditional prediction.

    Example::

        model = ConsistencyTraining(ToyMLP())
        loss, logs = model.loss(x0, step=step, total_steps=2000)   # x0 (B, 2)
        x = model.sample(torch.randn(1000, 2), nfe=2)
    """

    def __init__(self, net: nn.Module, config: ConsistencyConfig | None = None):
        """Wrap ``net`` with the training settings ``config`` (default ConsistencyConfig())."""
        _checks.network(net, owner="ConsistencyTraining")
        super().__init__()
        self.net = net
        self.config = config if config is not None else ConsistencyConfig()
        self.path = get_path(self.config.noising_type)
        self.coefficients = get_coefficients(self.config.coefficient_type)
        self.num_classes = int(getattr(net, "num_classes", 0) or 0)

    def _f(self, x_t: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        zeros = torch.zeros_like(t)
        a = expand_like(self.coefficients.a(t, zeros), x_t)
        b = expand_like(self.coefficients.b(t, zeros), x_t)
        F = _checks.output("net", self.net(x_t, t, zeros, y), x_t)  # (B, ...)
        return a * x_t + b * F  # (B, ...)

    def consistency_function(self, x_t: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """f_theta(x_t, t): the estimate at t = 0 of the trajectory through x_t (B, ...); t (B,)."""
        B = _checks.batch_tensor("x_t", x_t)
        t = _checks.times("t", t, B, x_t)
        y = _checks.labels(y, B, self.num_classes)
        return self._f(x_t, t, y)

    def ct_loss(
        self, x0: Tensor, noise: Tensor, *, t: Tensor, t_prev: Tensor, y: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The consistency-training loss on explicit times 0 <= t_prev < t (each (B,)); (loss, logs)."""
        B = _checks.batch_tensor("x0", x0)
        _checks.batch_tensor("noise", noise)
        _checks.same_shape("noise", noise, "x0", x0)
        t = _checks.times("t", t, B, x0)
        t_prev = _checks.times("t_prev", t_prev, B, x0)
        _checks.ordered("t_prev", t_prev, "t", t, strict=True)
        y = _checks.labels(y, B, self.num_classes)
        return self._objective(x0, noise, t, t_prev, y)

    def _objective(self, x0, noise, t, t_prev, y):
        x_t, _ = self.path.interpolate(x0, noise, t)  # (B, ...) both on one straight path
        x_prev, _ = self.path.interpolate(x0, noise, t_prev)
        f_t = self._f(x_t, t, y)  # (B, ...), with gradient
        with torch.no_grad():
            f_prev = self._f(x_prev, t_prev, y)  # (B, ...), the target: the student under stop-gradient
        dim = x0[0].numel()
        sq = (f_t - f_prev).flatten(1).pow(2).sum(1)  # (B,) squared l2 distance
        if self.config.distance == "pseudo_huber":
            c = self.config.huber_c or 0.00054 * math.sqrt(dim)
            dist = torch.sqrt(sq + c**2) - c
        else:
            dist = sq
        loss = (dist / (t - t_prev)).mean()  # weight lambda_i = 1 / (t_{i+1} - t_i)
        return loss, {"loss": loss.detach(), "ct_mse": (sq.detach() / dim).mean()}

    def loss(
        self,
        x0: Tensor,
        y: Tensor | None = None,
        *,
        step: int,
        total_steps: int,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """One training loss on a batch x0 (B, ...) at training step ``step`` of ``total_steps``:
        the grid has N(step) points; each row draws its pair from the log-normal. Returns (loss, logs)."""
        config = self.config
        B = _checks.batch_tensor("x0", x0)
        y = _checks.labels(y, B, self.num_classes)
        n = num_scales(step, total_steps, config.scales_init, config.scales_end)
        sigmas, times = time_grid(n, config)
        probs = pair_probabilities(sigmas, config.p_mean, config.p_std).to(x0.device)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        i = torch.multinomial(probs, B, replacement=True, generator=generator)  # (B,) pair index
        times = times.to(device=x0.device, dtype=x0.dtype)
        loss, logs = self._objective(x0, noise, times[i + 1], times[i], y)
        logs["num_scales"] = torch.tensor(float(n))
        return loss, logs

    def forward(
        self, x0: Tensor, y: Tensor | None = None, *, step: int | None = None, total_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``model(x0, y, step=, total_steps=)`` is the training loss (``loss``); to generate,
        call ``sample(noise)``."""
        if step is None or total_steps is None:
            raise ValueError(
                "ConsistencyTraining's forward is its training loss: call model(x0, y, step=k, total_steps=K) "
                "(or model.loss); to generate samples call model.sample(noise, nfe=1)"
            )
        return self.loss(x0, y, step=step, total_steps=total_steps, generator=generator)

    @torch.no_grad()
    @_checks.in_eval_mode
    def sample(
        self, noise: Tensor, y: Tensor | None = None, *, nfe: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """Multistep consistency sampling in ``nfe`` evaluations (as ``SoFlow.sample``): evaluate
        f at t_i = 1 - i / nfe, re-noise the estimate to t_{i+1} with fresh noise, repeat."""
        B = _checks.batch_tensor("noise", noise)
        y = _checks.labels(y, B, self.num_classes)
        if not isinstance(nfe, int) or nfe < 1:
            raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
        x = noise
        for i in range(nfe):
            x0_hat = self._f(x, noise.new_full((B,), 1.0 - i / nfe), y)
            if i + 1 < nfe:
                t_next = noise.new_tensor(1.0 - (i + 1) / nfe)
                fresh = torch.randn(noise.shape, device=noise.device, dtype=noise.dtype, generator=generator)
                x = self.path.alpha(t_next) * x0_hat + self.path.beta(t_next) * fresh  # re-noise
        return x0_hat

