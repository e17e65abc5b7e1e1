"""SoFlow: the consistency residual, the loss gradient, guidance, exact nets and training."""

import pytest
import torch
from torch import nn
from torch.func import jvp

from soflow_mini import (
    GaussianMixture, GaussianSolutionNet, SoFlow, SoFlowConfig, ToyMLP, guidance_decay,
    guided_velocity, l_ratio, logit_normal, sample_consistency_times, intermediate_time,
    sample_quality, sample_toy, train_toy,
)
from soflow_mini.paths import expand_like


def _double_mlp(seed=0, width=32):
    torch.manual_seed(seed)
    net = ToyMLP(width=width, depth=2, time_scale=10.0).double()
    with torch.no_grad():  # move away from the near-linear start so second derivatives matter
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("coefficient_type", ["euler", "trig"])
def test_consistency_residual_tends_to_jvp(coefficient_type):
    model = SoFlow(_double_mlp(), SoFlowConfig(coefficient_type=coefficient_type))
    B = 16
    x_t = torch.randn(B, 2, dtype=torch.float64)
    u = torch.randn(B, 2, dtype=torch.float64)
    t = torch.rand(B, dtype=torch.float64) * 0.5 + 0.4
    s = t * torch.rand(B, dtype=torch.float64) * 0.5

    def f(x, tt):
        return model._solution(x, tt, s, None)[0]

    # d_t f + (grad_x f) u, by one forward-mode JVP with tangent (u, 1)
    _, exact = jvp(f, (x_t, t), (u, torch.ones_like(t)))
    errors = []
    for h in (1e-2, 1e-3, 1e-4):
        l = t - h
        x_l = x_t + expand_like(l - t, x_t) * u
        residual = (f(x_t, t) - f(x_l, l)) / h
        errors.append((residual - exact).abs().max().item())
    scale = 1 + exact.abs().max().item()
    assert errors[2] < 1e-3 * scale
    # first-order convergence: the error shrinks tenfold with the step
    assert 8 < errors[0] / errors[1] < 12 and 8 < errors[1] / errors[2] < 12


@pytest.mark.parametrize("coefficient_type", ["euler", "trig"])
def test_consistency_loss_gradient_is_scaled_weighted_mse_gradient(coefficient_type):
    config = SoFlowConfig(coefficient_type=coefficient_type, p=0.75, eps=1e-3)
    model = SoFlow(_double_mlp(1), config)
    B = 12
    x0, noise = torch.randn(B, 2, dtype=torch.float64), torch.randn(B, 2, dtype=torch.float64)
    t = torch.rand(B, dtype=torch.float64) * 0.5 + 0.45
    s = t * torch.rand(B, dtype=torch.float64) * 0.8
    l = t - 0.3 * (t - s)
    loss, _ = model.consistency_loss(x0, noise, t=t, l=l, s=s)
    grads = torch.autograd.grad(loss, list(model.parameters()))

    # Reference: sg(w) * mean |Delta|^2 * (t - l) / (2 |b|), with f_l a constant.
    x_t, v_t = model.path.interpolate(x0, noise, t)
    x_l = x_t + expand_like(l - t, x_t) * v_t
    with torch.no_grad():
        f_l = model.solution(x_l, t=l, s=s)
    delta = (model.solution(x_t, t=t, s=s) - f_l) / expand_like(t - l, x_t)
    mse = delta.pow(2).mean(1)
    w = 1 / (mse.detach() + config.eps) ** config.p
    b = model.coefficients.b(t, s)
    reference = (w * mse * (t - l) / (2 * b.abs())).mean()
    ref_grads = torch.autograd.grad(reference, list(model.parameters()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


def test_guided_velocity_scale_one_mix_one_is_plain_target():
    v_t, v_c, v_u = torch.randn(3, 5, 4).unbind(0)
    t = torch.rand(5)
    out = guided_velocity(v_t, v_c, v_u, t, scale=1.0, mix_ratio=1.0, decay_time=0.8)
    torch.testing.assert_close(out, v_t)
    # mix 0: the model's own conditional velocity
    out = guided_velocity(v_t, v_c, v_u, t, scale=3.0, mix_ratio=0.0, decay_time=0.8)
    torch.testing.assert_close(out, v_c)
    # below the decay time, the full guided formula
    t = torch.full((5,), 0.3)
    out = guided_velocity(v_t, v_c, v_u, t, scale=3.0, mix_ratio=1.0, decay_time=0.8)
    torch.testing.assert_close(out, v_t + 2.0 * (v_t - v_u))


def test_guidance_decay_shape():
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    gamma = guidance_decay(t, 0.8)
    assert torch.equal(gamma[t <= 0.8], torch.ones_like(gamma[t <= 0.8]))
    assert gamma[-1] < 1e-6 and gamma[-2] < 0.05  # tends to 0 at t = 1
    above = gamma[t > 0.8]
    assert (above[1:] <= above[:-1]).all()  # decreasing towards noise
    assert abs(guidance_decay(torch.tensor([0.8001], dtype=torch.float64), 0.8).item() - 1) < 1e-6


def test_guided_loss_with_mix_zero_regresses_on_own_prediction():
    """mix 0 makes the FM target the network's own conditional velocity: zero error."""
    net = ToyMLP(width=32, depth=2, num_classes=3)
    model = SoFlow(net, SoFlowConfig(velocity_loss_ratio=1.0, cfg_scale=3.0, mix_ratio=0.0))
    x0, noise = torch.randn(16, 2), torch.randn(16, 2)
    y = torch.randint(0, 3, (16,))
    _, logs = model.flow_matching_loss(x0, noise, torch.rand(16), y)
    assert logs["fm_mse"].item() < 1e-12
    # every label dropped: the target is the plain conditional velocity v_t
    mask = torch.ones(16, dtype=torch.bool)
    _, logs_masked = model.flow_matching_loss(x0, noise, torch.full((16,), 0.5), y, cfg_mask=mask)
    plain = SoFlow(net, SoFlowConfig(velocity_loss_ratio=1.0))
    _, logs_plain = plain.flow_matching_loss(x0, noise, torch.full((16,), 0.5), None)  # None: the null class
    torch.testing.assert_close(logs_masked["fm_mse"], logs_plain["fm_mse"])


def test_guided_target_matches_separate_passes():
    """The batched guidance pass equals the formula evaluated with separate velocities."""
    torch.manual_seed(3)
    net = ToyMLP(width=32, depth=2, num_classes=4).double()
    config = SoFlowConfig(cfg_scale=2.5, mix_ratio=0.25, cfg_decay_time=0.6)
    model = SoFlow(net, config)
    B, n_fm = 10, 4
    x_t, v_t = torch.randn(B, 2, dtype=torch.float64), torch.randn(B, 2, dtype=torch.float64)
    t = torch.rand(B, dtype=torch.float64)
    y = torch.randint(0, 4, (B,))
    mask = torch.zeros(B, dtype=torch.bool)
    mask[[1, 6]] = True
    F_fm = net(x_t[:n_fm], t[:n_fm], t[:n_fm], y[:n_fm])
    target = model._guided_target(x_t, t, v_t, y, mask, F_fm, n_fm)
    v_c = model.velocity(x_t, t, y)
    v_u = model.velocity(x_t, t, None)  # the null class
    expected = guided_velocity(v_t, v_c, v_u, t, scale=2.5, mix_ratio=0.25, decay_time=0.6)
    expected[mask] = v_t[mask]
    torch.testing.assert_close(target, expected)


def _exact_model(mean, std, path="linear", coefficients="euler", **config):
    gaussian = GaussianMixture([mean], [std], path=path)
    net = GaussianSolutionNet(gaussian, coefficients)
    return SoFlow(net, SoFlowConfig(noising_type=path, coefficient_type=coefficients, **config)), gaussian


@pytest.mark.parametrize("path,coefficients", [("linear", "euler"), ("trig", "trig"), ("linear", "trig")])
def test_exact_net_has_zero_loss_on_point_mass(path, coefficients):
    """Point-mass data: the conditional velocity is the marginal one, so both errors vanish."""
    model, gaussian = _exact_model([1.0, -0.5], 0.0, path, coefficients)
    B = 256
    g = torch.Generator().manual_seed(0)
    x0 = gaussian.sample(B, generator=g)[0]
    noise = torch.randn(B, 2, dtype=torch.float64, generator=g)
    t = torch.rand(B, dtype=torch.float64, generator=g) * 0.98 + 0.01
    s = t * torch.rand(B, dtype=torch.float64, generator=g)
    l = t - 0.1 * (t - s)
    _, logs = model.flow_matching_loss(x0, noise, t)
    assert logs["fm_mse"].item() < 1e-20
    _, logs = model.consistency_loss(x0, noise, t=t, l=l, s=s)
    # x_l sits exactly on the trajectory of x_t for a point mass; linear paths keep the
    # Euler step exact, curved paths leave an O((t - l)^2) error
    assert logs["scm_mse"].item() < (1e-20 if path == "linear" else 1e-2)
    loss, logs = model.loss(x0, step=0, total_steps=10, generator=g)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("path,coefficients", [("linear", "euler"), ("trig", "trig")])
@pytest.mark.parametrize("nfe", [1, 3])
def test_exact_net_samples_reproduce_gaussian(path, coefficients, nfe):
    mean, std = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.5
    model, _ = _exact_model(mean.tolist(), std, path, coefficients)
    g = torch.Generator().manual_seed(1)
    x = model.sample(torch.randn(20000, 2, dtype=torch.float64, generator=g), nfe=nfe, generator=g)
    torch.testing.assert_close(x.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(x.std(0), torch.full((2,), std, dtype=torch.float64), atol=0.02, rtol=0)


def test_loss_splits_batch_into_the_two_terms():
    """loss() equals (n_fm/B) L_FM + (n_c/B) L_SCM on the same draws."""
    config = SoFlowConfig.preset("imagenet256")
    config.cfg_scale = 1.0
    model = SoFlow(_double_mlp(2), config)
    B = 20
    x0 = torch.randn(B, 2, dtype=torch.float64)
    step, total = 30, 100
    loss, logs = model.loss(x0, step=step, total_steps=total, generator=torch.Generator().manual_seed(7))

    g = torch.Generator().manual_seed(7)  # replay the draws in loss()'s order
    n_fm = int(0.75 * B)
    draw = dict(dtype=torch.float64, generator=g)
    noise = torch.randn(B, 2, **draw)
    t_fm = logit_normal(n_fm, config.time_mean[0], config.time_std[0], **draw)
    t_c, s_c = sample_consistency_times(B - n_fm, config.time_mean[1:], config.time_std[1:], **draw)
    l_c = intermediate_time(t_c, s_c, l_ratio("exponent", 0.1, 0.002, step, total))
    fm, logs_fm = model.flow_matching_loss(x0[:n_fm], noise[:n_fm], t_fm)
    sc, logs_sc = model.consistency_loss(x0[n_fm:], noise[n_fm:], t=t_c, l=l_c, s=s_c)
    torch.testing.assert_close(loss, (n_fm / B) * fm + ((B - n_fm) / B) * sc)
    torch.testing.assert_close(logs["fm_mse"], logs_fm["fm_mse"])
    torch.testing.assert_close(logs["scm_mse"], logs_sc["scm_mse"])


def test_consistency_only_and_flow_matching_only_batches():
    x0 = torch.randn(8, 2)
    for ratio, present, absent in ((0.0, "scm_mse", "fm_mse"), (1.0, "fm_mse", "scm_mse")):
        model = SoFlow(ToyMLP(width=16, depth=1), SoFlowConfig(velocity_loss_ratio=ratio))
        loss, logs = model.loss(x0, step=0, total_steps=1)
        loss.backward()
        assert present in logs and absent not in logs


class _DropoutNet(nn.Module):
    """F = dropout(1): a network whose only content is its random mask."""

    num_classes = 0

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.drop = nn.Dropout(0.5)

    def forward(self, x, t, s, y=None):
        return self.scale * self.drop(torch.ones_like(x))


def test_stochastic_layers_share_random_state_between_the_two_evaluations():
    model = SoFlow(_DropoutNet(), SoFlowConfig()).train()
    x0 = torch.randn(512, 4)
    t = torch.full((512,), 0.9)
    # noise = x0 makes v_t = 0 on the linear path, so x_l = x_t; with equal masks m,
    # Delta = -m (mean of m^2 is 2); with different masks it would be ~ (t - s) / (t - l)
    loss, logs = model.consistency_loss(x0, x0.clone(), t=t, l=t - 1e-3, s=torch.zeros(512))
    assert 1.5 < logs["scm_mse"].item() < 2.5
    loss.backward()
    assert model.net.scale.grad is not None


def test_short_training_run_improves_one_step_samples():
    torch.manual_seed(0)
    data, _ = sample_toy("8gaussians", 20000, seed=0)
    reference, _ = sample_toy("8gaussians", 2000, seed=1)
    model = SoFlow(ToyMLP(width=128, depth=3), SoFlowConfig.preset("toy"))
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(2))
    before = sample_quality(model.sample(noise), reference).energy
    history = train_toy(model, data, steps=400, batch_size=256, lr=2e-3, seed=0)
    after = sample_quality(model.sample(noise), reference).energy
    assert after < 0.35 * before, (before, after)
    fm = history["fm_mse"]
    assert sum(fm[-50:]) < sum(fm[:50])


def test_multistep_sampling_uses_generator_for_renoising():
    model = SoFlow(ToyMLP(width=16, depth=1), SoFlowConfig())
    with torch.no_grad():
        model.net.out[-1].weight.normal_()
    noise = torch.randn(4, 2)
    a = model.sample(noise, nfe=3, generator=torch.Generator().manual_seed(0))
    b = model.sample(noise, nfe=3, generator=torch.Generator().manual_seed(0))
    c = model.sample(noise, nfe=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
