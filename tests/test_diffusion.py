"""The VP path, the score / noise / data / velocity conversions and the DDPM / DDIM samplers,
checked against closed forms on Gaussian data."""

import itertools

import pytest
import torch
from torch import nn

from soflow_mini import GaussianMixture, ToyMLP, get_path, sample_toy, train_toy
from soflow_mini.baselines import Diffusion, DiffusionConfig, VPPath
from soflow_mini.baselines.diffusion import (
    PARAMETERIZATIONS,
    convert,
    ddpm_alpha_bar,
    from_eps,
    log_snr,
    pf_ode_coefficients,
    to_eps,
)

PATHS = {"vp": VPPath(), "linear": get_path("linear"), "trig": get_path("trig")}
MIXTURE = dict(means=[[1.0, -0.5], [-1.5, 1.0]], stds=[0.3, 0.6], weights=[0.4, 0.6])


def _times(n, lo=0.02, hi=0.98, seed=0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, dtype=torch.float64, generator=g)


class _ExactEpsNet(nn.Module):
    """eps(x, t) = -beta(t) score(x, t): the exact noise predictor of Gaussian-mixture data."""

    num_classes = 0

    def __init__(self, mixture):
        super().__init__()
        self.mixture = mixture
        self.calls = []

    def forward(self, x, t, s, y=None):
        self.calls.append((t.clone(), s.clone()))
        return to_eps("score", self.mixture.score(x, t), x, t, self.mixture.path)


def test_vp_path_is_variance_preserving_and_starts_at_data():
    path, t = VPPath(), _times(50, 0.0, 1.0)
    assert torch.allclose(path.alpha(t) ** 2 + path.beta(t) ** 2, torch.ones_like(t), atol=1e-12)
    zero = torch.zeros(1, dtype=torch.float64)
    assert path.alpha(zero).item() == 1.0 and path.beta(zero).item() == 0.0
    assert path.alpha(torch.ones(1, dtype=torch.float64)).item() < 0.01  # almost pure noise at t = 1


@pytest.mark.parametrize("name", ["alpha", "beta"])
def test_vp_path_derivatives_match_autograd(name):
    path = VPPath()
    t = _times(20).requires_grad_(True)
    value = getattr(path, name)(t)
    (grad,) = torch.autograd.grad(value.sum(), t)
    assert torch.allclose(grad, getattr(path, f"d_{name}")(t.detach()), rtol=1e-10, atol=1e-12)


def test_vp_path_is_the_continuous_limit_of_ddpm():
    alpha_bar = ddpm_alpha_bar(1000)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    continuous = VPPath(0.1, 20.0).alpha(t) ** 2
    # log alpha_bar = sum log(1 - rate_j) = -sum rate_j + O(sum rate_j^2): within 1 % in log space
    assert torch.allclose(continuous.log(), alpha_bar.log(), rtol=0.01, atol=1e-3)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_log_snr_decreases(name):
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    lam = log_snr(PATHS[name], t)
    assert (lam[1:] < lam[:-1]).all()


@pytest.mark.parametrize("name,source,target", [
    (n, a, b) for n in sorted(PATHS) for a, b in itertools.product(PARAMETERIZATIONS, repeat=2)
])
def test_conversions_round_trip(name, source, target):
    path, g = PATHS[name], torch.Generator().manual_seed(1)
    x, value = torch.randn(64, 2, dtype=torch.float64, generator=g), torch.randn(64, 2, dtype=torch.float64, generator=g)
    t = _times(64)
    there = convert(value, x, t, path=path, source=source, target=target)
    back = convert(there, x, t, path=path, source=target, target=source)
    assert torch.allclose(back, value, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_velocity_from_exact_score_is_the_marginal_velocity(name):
    """Two independent closed forms: the score converted to a velocity equals E[v_t | x_t]."""
    mixture = GaussianMixture(**MIXTURE, path=PATHS[name])
    x, _ = mixture.sample(256, generator=torch.Generator().manual_seed(2))
    t = _times(256)
    x_t = mixture.path.alpha(t)[:, None] * x + mixture.path.beta(t)[:, None] * torch.randn_like(x)
    v = convert(mixture.score(x_t, t), x_t, t, path=mixture.path, source="score", target="velocity")
    assert torch.allclose(v, mixture.velocity(x_t, t), rtol=1e-9, atol=1e-9)
    f, g2 = pf_ode_coefficients(mixture.path, t)
    pf_drift = f[:, None] * x_t - 0.5 * g2[:, None] * mixture.score(x_t, t)
    assert torch.allclose(pf_drift, mixture.velocity(x_t, t), rtol=1e-9, atol=1e-9)


def test_eps_from_exact_score_is_the_posterior_mean_noise():
    """One Gaussian N(mu, s^2 I): E[x1 | x_t] = beta (x_t - alpha mu) / (alpha^2 s^2 + beta^2)."""
    mu, std = torch.tensor([0.7, -1.2], dtype=torch.float64), 0.5
    path = VPPath()
    mixture = GaussianMixture([mu.tolist()], [std], path=path)
    t = _times(128)
    x_t = torch.randn(128, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    a, b = path.alpha(t)[:, None], path.beta(t)[:, None]
    expected = b * (x_t - a * mu) / (a**2 * std**2 + b**2)
    eps = to_eps("score", mixture.score(x_t, t), x_t, t, path)
    assert torch.allclose(eps, expected, rtol=1e-10, atol=1e-12)
    x0 = from_eps("x0", eps, x_t, t, path)
    assert torch.allclose(a * x0 + b * eps, x_t, atol=1e-10)  # the pair reproduces x_t


def test_ddim_with_exact_noise_predictor_follows_the_exact_flow():
    mu, std = [1.0, -0.5], 0.4
    mixture = GaussianMixture([mu], [std], path=VPPath())
    model = Diffusion(_ExactEpsNet(mixture))
    noise = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ones, zeros = torch.ones(500, dtype=torch.float64), torch.zeros(500, dtype=torch.float64)
    exact = mixture.solution(noise, ones, zeros)
    errors = [(model.sample(noise, steps=n) - exact).abs().max().item() for n in (50, 100, 400)]
    assert errors[2] < 0.02
    assert errors[0] / errors[2] > 6  # first order: 8 times the steps, about 8 times smaller
    assert all(torch.equal(t, s) for t, s in model.net.calls)  # the contract: s = t


def test_ddpm_with_exact_noise_predictor_reproduces_the_gaussian():
    mu, std = torch.tensor([1.0, -0.5], dtype=torch.float64), 0.4
    mixture = GaussianMixture([mu.tolist()], [std], path=VPPath())
    model = Diffusion(_ExactEpsNet(mixture))
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(4000, 2, dtype=torch.float64, generator=g)
    x = model.sample(noise, steps=400, eta=1.0, generator=g)
    assert (x.mean(0) - mu).abs().max().item() < 0.03  # 5 standard errors
    assert (x.std(0) - std).abs().max().item() < 0.025


def test_sampler_arguments_are_checked():
    model = Diffusion(_ExactEpsNet(GaussianMixture([[0.0, 0.0]], [1.0], path=VPPath())))
    noise = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="steps"):
        model.sample(noise, steps=0)
    with pytest.raises(ValueError, match="eta"):
        model.sample(noise, eta=-0.5)
    with pytest.raises(ValueError, match="clip_x0"):
        model.sample(noise, clip_x0=0.0)
    with pytest.raises(ValueError, match="parameterization"):
        convert(noise, noise, torch.full((4,), 0.5), path=VPPath(), source="eps", target="v")
    with pytest.raises(ValueError, match="t_min"):
        DiffusionConfig(t_min=0.0)


def test_short_training_lowers_the_loss_and_samples_approach_the_data():
    torch.manual_seed(0)
    x, _ = sample_toy("8gaussians", 4000, seed=0)
    model = Diffusion(ToyMLP(width=64, depth=2))
    history = train_toy(model, x, steps=300, batch_size=256, lr=2e-3, seed=0)
    first, last = sum(history["loss"][:30]) / 30, sum(history["loss"][-30:]) / 30
    assert last < 0.8 * first
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(6))
    samples = model.sample(noise, steps=20, clip_x0=3.0)
    assert samples.abs().max().item() <= 3.0 + 1e-6  # the last step returns the clamped x0_hat
    assert samples.norm(dim=1).median().item() == pytest.approx(2.0, abs=0.3)  # modes lie on the radius-2 circle
