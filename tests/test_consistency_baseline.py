"""Consistency training (iCT recipe) against exact Gaussian flows and its own discretisation."""

import math

import pytest
import torch
from torch.func import jvp

from soflow_mini import GaussianMixture, GaussianSolutionNet, ToyMLP, sample_quality, sample_toy, train_toy
from soflow_mini.baselines import ConsistencyConfig, ConsistencyTraining
from soflow_mini.baselines.consistency import karras_sigmas, num_scales, pair_probabilities, time_grid

F64 = torch.float64


def _exact(mean, std, kind="linear"):
    """Consistency model whose network is the exact F of Gaussian data on the given path."""
    gaussian = GaussianMixture([mean], [std], path=kind)
    config = ConsistencyConfig(noising_type=kind, coefficient_type="euler" if kind == "linear" else "trig")
    coefficient = "euler" if kind == "linear" else "trig"
    return gaussian, ConsistencyTraining(GaussianSolutionNet(gaussian, coefficient), config)


@pytest.mark.parametrize("coefficient_type", ["euler", "trig"])
def test_boundary_condition_holds_exactly_for_any_network(coefficient_type):
    torch.manual_seed(0)
    model = ConsistencyTraining(ToyMLP(width=32, depth=2), ConsistencyConfig(coefficient_type=coefficient_type))
    x = 3 * torch.randn(512, 2)
    assert torch.equal(model.consistency_function(x, t=0.0), x)
    assert not torch.equal(model.consistency_function(x, t=0.5), x)


def test_loss_is_zero_for_the_exact_solution_of_a_point_mass():
    gaussian, model = _exact([0.5, -1.0], 0.0)
    x0 = gaussian.sample(256, generator=torch.Generator().manual_seed(0))[0]
    for step in (0, 500, 999):  # grids of 11, 161 and 1281 points
        loss, logs = model.loss(x0, step=step, total_steps=1000, generator=torch.Generator().manual_seed(step))
        assert loss.item() < 1e-12 and logs["ct_mse"].item() < 1e-20
    t = torch.rand(256, dtype=F64) * 0.9 + 0.1
    loss, _ = model.ct_loss(x0, torch.randn(256, 2, dtype=F64), t=t, t_prev=0.5 * t)
    assert loss.item() < 1e-12


@pytest.mark.parametrize("kind", ["linear", "trig"])
def test_one_step_sampling_with_the_exact_net_is_the_exact_map(kind):
    gaussian, model = _exact([1.0, -0.5], 0.4, kind)
    noise = torch.randn(500, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    exact = gaussian.solution(noise, torch.ones(500, dtype=F64), torch.zeros(500, dtype=F64))
    torch.testing.assert_close(model.sample(noise, nfe=1), exact)


@pytest.mark.parametrize("nfe", [2, 3])
def test_multistep_sampling_with_the_exact_net_reproduces_the_gaussian(nfe):
    gaussian, model = _exact([1.0, -0.5], 0.4)
    g = torch.Generator().manual_seed(2)
    x = model.sample(torch.randn(40000, 2, dtype=F64, generator=g), nfe=nfe, generator=g)
    torch.testing.assert_close(x.mean(0), gaussian.means[0], atol=0.01, rtol=0)
    torch.testing.assert_close(x.std(0), torch.full((2,), 0.4, dtype=F64), atol=0.01, rtol=0)


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")
def test_ct_residual_of_the_exact_gaussian_tends_to_the_pde_residual():
    # (f(x_t, t) - f(x_l, l)) / (t - l) on one straight path tends to d_t f + (grad_x f) u,
    # which for the exact f equals (grad_x f)(u - v) by the transport PDE: first order in t - l.
    gaussian, model = _exact([1.0, -0.5], 0.4)
    g = torch.Generator().manual_seed(3)
    x0, _ = gaussian.sample(64, generator=g)
    noise = torch.randn(64, 2, dtype=F64, generator=g)
    t = torch.rand(64, dtype=F64, generator=g) * 0.6 + 0.3
    x_t, u = model.path.interpolate(x0, noise, t)
    _, limit = jvp(lambda x, tt: model.consistency_function(x, t=tt), (x_t, t), (u, torch.ones_like(t)))
    errors = []
    for h in (1e-2, 1e-3, 1e-4):
        x_l, _ = model.path.interpolate(x0, noise, t - h)
        residual = (model.consistency_function(x_t, t=t) - model.consistency_function(x_l, t=t - h)) / h
        errors.append((residual - limit).abs().max().item())
    assert 8 < errors[0] / errors[1] < 12 and 8 < errors[1] / errors[2] < 12
    v = gaussian.velocity(x_t, t)
    _, pde = jvp(lambda x: model.consistency_function(x, t=t), (x_t,), (u - v,))
    torch.testing.assert_close(limit, pde)


def test_curriculum_doubles_the_grid_in_equal_stages():
    # K = 1000, s0 = 10, s1 = 1280: 8 stages of 125 steps, N from 11 to 1281
    assert [num_scales(k, 1000) for k in (0, 124, 125, 250, 874, 875, 999, 5000)] == [
        11, 11, 21, 41, 641, 1281, 1281, 1281,
    ]
    # iCT on CIFAR-10: 400k steps, stages of 50k
    assert num_scales(49_999, 400_000) == 11 and num_scales(50_000, 400_000) == 21
    assert num_scales(0, 10, scales_init=20, scales_end=20) == 21


def test_time_grid_and_pair_distribution():
    config = ConsistencyConfig()
    sigmas, times = time_grid(41, config)
    assert (times[1:] > times[:-1]).all() and times[-1].item() == 1.0 and math.isinf(sigmas[-1].item())
    assert math.isclose(times[0].item(), 0.002 / 1.002)
    torch.testing.assert_close(sigmas[:-1], karras_sigmas(41)[:-1])
    assert math.isclose(karras_sigmas(41)[-1].item(), 80.0)
    p = pair_probabilities(sigmas, config.p_mean, config.p_std)
    assert p.shape == (40,) and (p > 0).all() and math.isclose(p.sum().item(), 1.0)
    # the mass of pair i is the log-normal probability of [sigma_i, sigma_{i+1}]
    normal = torch.distributions.Normal(torch.tensor(-1.1, dtype=F64), torch.tensor(2.0, dtype=F64))
    mass = normal.cdf(torch.log(sigmas[11])) - normal.cdf(torch.log(sigmas[10]))
    total = 1 - normal.cdf(torch.log(sigmas[0]))
    assert math.isclose(p[10].item(), (mass / total).item(), rel_tol=1e-9)
    _, trig = time_grid(41, ConsistencyConfig(noising_type="trig"))
    torch.testing.assert_close(torch.tan(0.5 * math.pi * trig[:-1]), sigmas[:-1])


def test_loss_is_deterministic_and_drives_train_toy():
    torch.manual_seed(0)
    model = ConsistencyTraining(ToyMLP(width=64, depth=2))
    data, _ = sample_toy("moons", 4000, seed=0)
    held_out, _ = sample_toy("moons", 1000, seed=1)
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(2))
    a = model(data[:64], step=0, total_steps=10, generator=torch.Generator().manual_seed(4))
    b = model.loss(data[:64], step=0, total_steps=10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and a[1]["num_scales"].item() == 11
    before = sample_quality(model.sample(noise), held_out).energy
    history = train_toy(model, data, steps=300, batch_size=128, lr=2e-3, seed=0)
    after = sample_quality(model.sample(noise), held_out).energy
    assert after < 0.5 * before
    assert sum(history["ct_mse"][-30:]) < sum(history["ct_mse"][:30])


def test_the_generic_trainer_drives_it(tmp_path):
    from soflow_mini.train import Trainer, TrainConfig
    from soflow_mini.train.data import PointData

    torch.manual_seed(0)
    model = ConsistencyTraining(ToyMLP(width=32, depth=1))
    config = TrainConfig(steps=4, batch_size=16, log_every=2, checkpoint_every=2, progress=False, device="cpu")
    trainer = Trainer(model, PointData("moons", 256, conditional=False, seed=0), config, tmp_path,
                      sample_kwargs={"nfe": 2})
    assert trainer.fit().status == "finished"


def test_labels_and_input_errors():
    torch.manual_seed(0)
    model = ConsistencyTraining(ToyMLP(width=16, depth=1, num_classes=3))
    x, y = torch.randn(8, 2), torch.randint(0, 3, (8,))
    loss, _ = model.loss(x, y, step=0, total_steps=1)
    loss.backward()
    assert model.sample(torch.randn(8, 2), y, nfe=2).shape == (8, 2)
    with pytest.raises(ValueError, match="nfe"):
        model.sample(torch.randn(4, 2), nfe=0)
    with pytest.raises(ValueError, match="t_prev"):
        model.ct_loss(x, x, t=torch.full((8,), 0.5), t_prev=torch.full((8,), 0.5))
    with pytest.raises(ValueError, match="distance"):
        ConsistencyConfig(distance="huber")
    with pytest.raises(ValueError, match="scales_init"):
        ConsistencyConfig(scales_init=20, scales_end=10)
