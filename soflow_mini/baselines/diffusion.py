"""Diffusion models (DDPM, Ho et al. 2020; DDIM, Song et al. 2021) on the variance-preserving
path of the score SDE (Song et al. 2021), and the conversions between the noise, score,
data and velocity parameterizations of any Gaussian path x_t = alpha(t) x0 + beta(t) x1.

Same conventions as the rest of soflow_mini: t = 0 is data, t = 1 is noise, x1 ~ N(0, I),
and the network contract net(x, t, s, y), here evaluated at s = t.

Naming: the DDPM literature writes beta for the noise-rate schedule. Here, as in
``soflow_mini.paths``, beta(t) is the noise coefficient of the path; the rate is ``rate(t)``.

Given x_t and one prediction, the others follow from the two path equations

    x_t = alpha x0 + beta eps,      v = alpha' x0 + beta' eps,      score = -eps / beta,

(eps and x0 are the posterior means E[x1 | x_t], E[x0 | x_t]; score is grad log p_t), so

    x0  = (beta' x_t - beta v) / (alpha beta' - alpha' beta),
    eps = (alpha v - alpha' x_t) / (alpha beta' - alpha' beta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import torch
from torch import Tensor, nn

from .. import _checks
from ..paths import expand_like

Parameterization = Literal["eps", "score", "x0", "velocity"]
PARAMETERIZATIONS = ("eps", "score", "x0", "velocity")


class GaussianPath(Protocol):
    """Anything with alpha(t), beta(t) and their derivatives: NoisingPath or VPPath."""

    def alpha(self, t: Tensor) -> Tensor: ...
    def beta(self, t: Tensor) -> Tensor: ...
    def d_alpha(self, t: Tensor) -> Tensor: ...
    def d_beta(self, t: Tensor) -> Tensor: ...


# ---------------------------------------------------------------------------- the VP path
@dataclass(frozen=True)
class VPPath:
    """Variance-preserving path with a linear rate schedule (alpha^2 + beta^2 = 1):

        rate(t) = rate_min + t (rate_max - rate_min),
        alpha(t) = exp(-1/2 int_0^t rate) = exp(-(rate_min t + (rate_max - rate_min) t^2 / 2) / 2),
        beta(t) = sqrt(1 - alpha(t)^2).

    rate_min = 0.1, rate_max = 20 is the continuous limit of DDPM's 1000 steps with
    per-step rates from 1e-4 to 0.02. d_beta is infinite at t = 0: evaluate at t > 0.
    """

    rate_min: float = 0.1
    rate_max: float = 20.0
    name: ClassVar[str] = "vp"

    def __post_init__(self) -> None:
        if not 0 <= self.rate_min <= self.rate_max or self.rate_max <= 0:
            raise ValueError(f"need 0 <= rate_min <= rate_max, rate_max > 0; got {self.rate_min}, {self.rate_max}")

    def rate(self, t: Tensor) -> Tensor:
        return self.rate_min + t * (self.rate_max - self.rate_min)

    def log_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * (self.rate_min * t + 0.5 * (self.rate_max - self.rate_min) * t**2)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(self.log_alpha(t))

    def beta(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))  # sqrt(1 - alpha^2), accurate near t = 0

    def d_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * self.rate(t) * self.alpha(t)

    def d_beta(self, t: Tensor) -> Tensor:
        return 0.5 * self.rate(t) * self.alpha(t) ** 2 / self.beta(t)  # from alpha alpha' + beta beta' = 0

    def interpolate(self, x0: Tensor, noise: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Return (x_t, v_t) for data x0 (B, ...), noise (B, ...) and times t (B,) in (0, 1]."""
        tb = expand_like(t, x0)
        x_t = self.alpha(tb) * x0 + self.beta(tb) * noise  # (B, ...)
        v_t = self.d_alpha(tb) * x0 + self.d_beta(tb) * noise  # (B, ...)
        return x_t, v_t


def ddpm_alpha_bar(num_steps: int = 1000, rate_first: float = 1e-4, rate_last: float = 0.02) -> Tensor:
    """Discrete DDPM: alpha_bar_i = prod_{j <= i} (1 - rate_j), i = 1..num_steps, rates linear; (num_steps,) float64.

    alpha_bar_i is alpha(t)^2 at t = i / num_steps; VPPath(num_steps * rate_first,
    num_steps * rate_last) is its continuous limit.
    """
    rates = torch.linspace(rate_first, rate_last, num_steps, dtype=torch.float64)
    return torch.cumprod(1 - rates, dim=0)


def log_snr(path: GaussianPath, t: Tensor) -> Tensor:
    """Log signal-to-noise ratio lambda(t) = log(alpha^2 / beta^2)."""
    return 2 * (torch.log(path.alpha(t)) - torch.log(path.beta(t)))


def pf_ode_coefficients(path: GaussianPath, t: Tensor) -> tuple[Tensor, Tensor]:
    """(f(t), g(t)^2) of the forward SDE dx = f x dt + g dW whose marginals are the path's:

        f = alpha' / alpha,   g^2 = 2 (beta beta' - f beta^2);

    its probability-flow ODE is dx/dt = f x - g^2 score / 2 (Song et al. 2021).
    """
    f = path.d_alpha(t) / path.alpha(t)
    g2 = 2 * (path.beta(t) * path.d_beta(t) - f * path.beta(t) ** 2)
    return f, g2


# ---------------------------------------------------------------------------- conversions
def _coefficients(path: GaussianPath, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    t = t.to(dtype=x.dtype, device=x.device)
    return tuple(expand_like(c, x) for c in (path.alpha(t), path.beta(t), path.d_alpha(t), path.d_beta(t)))


def to_eps(kind: Parameterization, value: Tensor, x_t: Tensor, t: Tensor, path: GaussianPath) -> Tensor:
    """The noise prediction eps equivalent to ``value`` of parameterization ``kind``; (B, ...)."""
    kind = _checks.choice("parameterization", kind, dict.fromkeys(PARAMETERIZATIONS))
    a, b, da, db = _coefficients(path, t, x_t)
    if kind == "eps":
        return value
    if kind == "score":
        return -b * value  # score = -eps / beta
    if kind == "x0":
        return (x_t - a * value) / b
    return (a * value - da * x_t) / (a * db - da * b)  # velocity


def from_eps(kind: Parameterization, eps: Tensor, x_t: Tensor, t: Tensor, path: GaussianPath) -> Tensor:
    """Parameterization ``kind`` of the prediction whose noise is ``eps``; (B, ...)."""
    kind = _checks.choice("parameterization", kind, dict.fromkeys(PARAMETERIZATIONS))
    a, b, da, db = _coefficients(path, t, x_t)
    if kind == "eps":
        return eps
    if kind == "score":
        return -eps / b
    x0 = (x_t - b * eps) / a
    if kind == "x0":
        return x0
    return da * x0 + db * eps  # velocity


def convert(
    value: Tensor, x_t: Tensor, t: Tensor, *, path: GaussianPath, source: Parameterization, target: Parameterization
) -> Tensor:
    """Turn a prediction at (x_t, t) from one parameterization into another (through eps).

    Singular where a coefficient vanishes: score and x0 need beta > 0, x0 and velocity from
    eps need alpha > 0.
    """
    return from_eps(target, to_eps(source, value, x_t, t, path), x_t, t, path)


# ---------------------------------------------------------------------------- the model
@dataclass
class DiffusionConfig:
    """VP rate schedule; training times t ~ U(t_min, 1); label dropout for guidance."""

    rate_min: float = 0.1
    rate_max: float = 20.0
    t_min: float = 1e-3
    cfg_drop_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.t_min < 1:
            raise ValueError(f"t_min must lie in (0, 1), got {self.t_min}")
        if not 0 <= self.cfg_drop_rate <= 1:
            raise ValueError(f"cfg_drop_rate must lie in [0, 1], got {self.cfg_drop_rate}")
        VPPath(self.rate_min, self.rate_max)  # checks the schedule


class Diffusion(nn.Module):
    """Noise-prediction diffusion model on the contract ``net(x, t, s, y) -> F`` (shape of x),
    evaluated at s = t: F regresses the noise x1 (DDPM's eps). Labels run
    0..net.num_classes - 1; y=None is the unconditional prediction.

    Example::

        model = Diffusion(ToyMLP())
        loss, logs = model.loss(x0)                                  # x0 (B, 2)
        x = model.sample(torch.randn(1000, 2), steps=50, eta=0.0)    # DDIM
    """

    def __init__(self, net: nn.Module, config: DiffusionConfig | None = None):
        """Wrap ``net`` with the training settings ``config`` (default DiffusionConfig())."""
        _checks.network(net, owner="Diffusion")
        super().__init__()
        self.net = net
        self.config = config if config is not None else DiffusionConfig()
        self.path = VPPath(self.config.rate_min, self.config.rate_max)
        self.num_classes = int(getattr(net, "num_classes", 0) or 0)

    def _F(self, x_t: Tensor, t: Tensor, s: Tensor, y: Tensor | None) -> Tensor:
        """The network output, checked to have the shape of x_t."""
        return _checks.output("net", self.net(x_t, t, s, y), x_t)  # (B, ...)

    def eps(self, x_t: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Predicted noise eps_theta(x_t, t); shape of x_t."""
        B = _checks.batch_tensor("x_t", x_t)
        t = _checks.times("t", t, B, x_t)
        y = _checks.labels(y, B, self.num_classes)
        return self._F(x_t, t, t, y)

    def predict(self, x_t: Tensor, t: Tensor | float, y: Tensor | None = None, *, kind: Parameterization = "velocity") -> Tensor:
        """The network's prediction in any parameterization; "velocity" is the PF-ODE drift."""
        B = _checks.batch_tensor("x_t", x_t)
        t = _checks.times("t", t, B, x_t)
        return from_eps(kind, self.eps(x_t, t, y), x_t, t, self.path)

    def loss(
        self, x0: Tensor, y: Tensor | None = None, *, step: int = 0, total_steps: int = 1,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean squared error between eps_theta(x_t, t) and the noise; t ~ U(t_min, 1). Step
        arguments are unused (same signature as the other models, for ``train_toy``)."""
        B = _checks.batch_tensor("x0", x0)
        y = _checks.labels(y, B, self.num_classes)
        draw = dict(device=x0.device, dtype=x0.dtype, generator=generator)
        noise = torch.randn(x0.shape, **draw)
        t = self.config.t_min + (1 - self.config.t_min) * torch.rand(B, **draw)
        if y is not None and self.config.cfg_drop_rate > 0:
            drop = torch.rand(B, device=x0.device, generator=generator) < self.config.cfg_drop_rate
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        x_t, _ = self.path.interpolate(x0, noise, t)
        mse = (self._F(x_t, t, t, y) - noise).flatten(1).pow(2).mean(1)  # (B,)
        loss = mse.mean()
        return loss, {"loss": loss.detach(), "eps_mse": loss.detach()}

    forward = loss

    @torch.no_grad()
    @_checks.in_eval_mode
    def sample(
        self, noise: Tensor, y: Tensor | None = None, *, steps: int = 50, eta: float = 0.0,
        clip_x0: float | None = None, generator: torch.Generator | None = None,
    ) -> Tensor:
        """Generate from noise (B, ...) in ``steps`` network evaluations on the grid t_i = 1 - i / steps.

        eta = 0: DDIM (deterministic, a discretisation of the probability-flow ODE);
        eta = 1: DDPM ancestral sampling. Each step from t to s < t draws
        x_s = alpha_s x0_hat + sqrt(beta_s^2 - sigma^2) eps_hat + sigma z with
        sigma = eta (beta_s / beta_t) sqrt(1 - (alpha_t / alpha_s)^2) and z ~ N(0, I).

        x0_hat = (x_t - beta_t eps_hat) / alpha_t multiplies the network's error by
        beta_t / alpha_t (about 150 at t = 1): ``clip_x0`` = c clamps x0_hat to [-c, c]
        elementwise, as DDPM's image sampler clamps to the pixel range.
        """
        B = _checks.batch_tensor("noise", noise)
        y = _checks.labels(y, B, self.num_classes)
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must lie in [0, 1] (0: DDIM, 1: DDPM), got {eta}")
        if clip_x0 is not None and not clip_x0 > 0:
            raise ValueError(f"clip_x0 must be None or positive, got {clip_x0}")
        grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()
        x = noise
        for t_now, t_next in zip(grid[:-1], grid[1:]):
            t = noise.new_full((B,), t_now)
            eps = self._F(x, t, t, y)  # (B, ...)
            x0 = from_eps("x0", eps, x, t, self.path)  # (B, ...)
            if clip_x0 is not None:
                x0 = x0.clamp(-clip_x0, clip_x0)
                eps = to_eps("x0", x0, x, t, self.path)  # the noise consistent with the clamped x0
            if t_next == 0.0:
                x = x0
                break
            a_t, b_t = _scalar_coefficients(self.path, t_now)
            a_s, b_s = _scalar_coefficients(self.path, t_next)
            sigma = eta * (b_s / b_t) * math.sqrt(max(0.0, 1 - (a_t / a_s) ** 2))
            x = a_s * x0 + math.sqrt(max(0.0, b_s**2 - sigma**2)) * eps
            if sigma > 0:
                z = torch.randn(noise.shape, device=noise.device, dtype=noise.dtype, generator=generator)
                x = x + sigma * z
        return x


def _scalar_coefficients(path: GaussianPath, t: float) -> tuple[float, float]:
    tt = torch.tensor([t], dtype=torch.float64)
    return float(path.alpha(tt)), float(path.beta(tt))
