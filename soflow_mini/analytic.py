"""Closed-form flows of Gaussian data, used as ground truth in tests and chapters.

For data N(mu, sigma^2 I) and noise N(0, I) on a path x_t = alpha(t) x0 + beta(t) x1, the
marginal at time t is N(m_t, sigma_t^2 I) with m_t = alpha mu, sigma_t^2 = alpha^2 sigma^2 + beta^2.
The marginal velocity is affine in x and the solution function is the affine map

    f(x, t, s) = m_s + (sigma_s / sigma_t) (x - m_t).

For a mixture of such Gaussians the marginal velocity is the posterior-weighted average of
the component velocities; its solution function is found numerically (``integrate``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .coefficients import SolutionCoefficients, get_coefficients
from .paths import NoisingPath, get_path


class GaussianMixture:
    """Isotropic Gaussian mixture data: means (K, D), stds (K,), weights (K,) summing to 1."""

    def __init__(self, means, stds, weights=None, path: NoisingPath | str = "linear"):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.dim() != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(self.means.shape)}")
        K = self.means.shape[0]
        self.stds = torch.as_tensor(stds, dtype=torch.float64).reshape(-1).expand(K).clone()
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (K,) or (w < 0).any() or abs(float(w.sum()) - 1) > 1e-6:
            raise ValueError(f"weights must be {K} non-negative numbers summing to 1, got {w.tolist()}")
        self.weights = w
        self.path = get_path(path) if isinstance(path, str) else path

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n data points (n, D) float64 and their component labels (n,)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k, None] * z, k

    def _moments(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per component: m_t (B, K, D), its t-derivative, var_t (B, K), half its t-derivative."""
        p = self.path
        a, b, da, db = p.alpha(t)[:, None], p.beta(t)[:, None], p.d_alpha(t)[:, None], p.d_beta(t)[:, None]
        var0 = self.stds[None] ** 2  # (1, K)
        m = a[..., None] * self.means[None]  # (B, K, D)
        dm = da[..., None] * self.means[None]
        var = a**2 * var0 + b**2  # (B, K)
        half_dvar = a * da * var0 + b * db  # (B, K)
        return m, dm, var, half_dvar

    def posterior(self, x: Tensor, t: Tensor) -> Tensor:
        """p(component k | x_t = x); x (B, D), t (B,) -> (B, K)."""
        m, _, var, _ = self._moments(t)
        D = x.shape[1]
        sq = ((x[:, None] - m) ** 2).sum(-1)  # (B, K)
        logp = torch.log(self.weights)[None] - 0.5 * sq / var - 0.5 * D * torch.log(var)
        return torch.softmax(logp, dim=1)

    def component_velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """Velocity of each component's own flow, (B, K, D)."""
        m, dm, var, half_dvar = self._moments(t)
        return dm + (half_dvar / var)[..., None] * (x[:, None] - m)

    def velocity(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Marginal velocity E[v_t | x_t = x] (B, D); with labels y, that of component y."""
        x64, t64 = x.double(), t.double()
        vk = self.component_velocity(x64, t64)  # (B, K, D)
        if y is not None:
            v = vk[torch.arange(x.shape[0]), y]
        else:
            v = (self.posterior(x64, t64)[..., None] * vk).sum(1)
        return v.to(x.dtype)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        """grad_x log p_t(x), (B, D)."""
        m, _, var, _ = self._moments(t.double())
        x64 = x.double()
        per = -(x64[:, None] - m) / var[..., None]  # (B, K, D)
        return (self.posterior(x64, t.double())[..., None] * per).sum(1).to(x.dtype)

    def solution(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        """Exact solution function; closed form for one component, else an error."""
        if self.num_components != 1:
            raise ValueError("the closed-form solution needs a single Gaussian; use integrate() for mixtures")
        m_t, _, var_t, _ = self._moments(t.double())
        m_s, _, var_s, _ = self._moments(s.double())
        ratio = (var_s / var_t).sqrt()[..., None]  # (B, 1, 1)
        return (m_s + ratio * (x.double()[:, None] - m_t))[:, 0].to(x.dtype)


def integrate(
    velocity: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor | float, s: Tensor | float, *, steps: int = 200
) -> Tensor:
    """Solve dx/dtau = velocity(x, tau) from tau = t to tau = s with classical RK4.

    t, s are floats or (B,) tensors; every sample takes ``steps`` equal steps.
    """
    B = x.shape[0]
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(B)
    s = torch.as_tensor(s, dtype=x.dtype, device=x.device).expand(B)
    h = (s - t) / steps  # (B,)
    hb = h.reshape(B, *([1] * (x.dim() - 1)))
    tau = t.clone()
    for _ in range(steps):
        k1 = velocity(x, tau)
        k2 = velocity(x + 0.5 * hb * k1, tau + 0.5 * h)
        k3 = velocity(x + 0.5 * hb * k2, tau + 0.5 * h)
        k4 = velocity(x + hb * k3, tau + h)
        x = x + hb * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        tau = tau + h
    return x


class GaussianSolutionNet(nn.Module):
    """The exact network F for Gaussian data: a(t, s) x + b(t, s) F(x, t, s) = f(x, t, s).

    At s = t, where b = 0, it returns the limit (v - d_s a x) / d_s b.
    """

    num_classes = 0

    def __init__(self, gaussian: GaussianMixture, coefficients: SolutionCoefficients | str = "euler"):
        super().__init__()
        if gaussian.num_components != 1:
            raise ValueError("GaussianSolutionNet needs a single Gaussian")
        self.gaussian = gaussian
        self.coefficients = get_coefficients(coefficients) if isinstance(coefficients, str) else coefficients

    def forward(self, x: Tensor, t: Tensor, s: Tensor, y: Tensor | None = None) -> Tensor:
        c = self.coefficients
        a, b = c.a(t, s)[:, None], c.b(t, s)[:, None]
        f = self.gaussian.solution(x, t, s)
        at_t = (self.gaussian.velocity(x, t) - c.ds_a * x) / c.ds_b
        safe_b = torch.where(b == 0, torch.ones_like(b), b)
        return torch.where(b == 0, at_t, (f - a * x) / safe_b)
