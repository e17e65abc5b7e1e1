import math

import pytest
import torch

from soflow_mini import (
    TOY_DATASETS, data_floor, energy_distance, noise_band, sample_toy, sliced_wasserstein2, toy_num_classes,
)


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toys_are_deterministic_and_labelled(name):
    x, y = sample_toy(name, 1000, seed=3)
    x2, y2 = sample_toy(name, 1000, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (1000, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.unique().tolist()) == set(range(toy_num_classes(name)))
    assert not torch.equal(x, sample_toy(name, 1000, seed=4)[0])


def test_checkerboard_points_lie_on_dark_squares():
    x, y = sample_toy("checkerboard", 4000, seed=0)
    col, row = torch.floor(x[:, 0] + 2), torch.floor(x[:, 1] + 2)
    assert ((col + row) % 2 == 0).all()
    assert (x.abs() <= 2).all()


def test_labels_identify_eight_gaussian_components():
    x, y = sample_toy("8gaussians", 2000, seed=0)
    angle = torch.atan2(x[:, 1], x[:, 0]) % (2 * math.pi)
    nearest = torch.round(angle / (2 * math.pi / 8)).long() % 8
    assert (nearest == y).float().mean() > 0.99


def _normal_abs_mean(mu, sd):
    """E|Z| for Z ~ N(mu, sd^2)."""
    phi = 0.5 * (1 + math.erf(-mu / (sd * math.sqrt(2))))
    return sd * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * sd**2)) + mu * (1 - 2 * phi)


def test_energy_distance_of_shifted_normals_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    delta = 1.0
    x = torch.randn(6000, 1, generator=g)
    y = torch.randn(6000, 1, generator=g) + delta
    closed = 2 * _normal_abs_mean(delta, math.sqrt(2)) - 2 * _normal_abs_mean(0.0, math.sqrt(2))
    assert energy_distance(x, y) == pytest.approx(closed, abs=0.02)


def test_sliced_w2_of_shifted_gaussians_is_shift_over_sqrt_dim():
    g = torch.Generator().manual_seed(0)
    shift = torch.tensor([3.0, 0.0])
    x = torch.randn(8000, 2, generator=g)
    y = torch.randn(8000, 2, generator=g) + shift
    # E_theta (theta . shift)^2 = |shift|^2 / D for uniform unit directions
    assert sliced_wasserstein2(x, y, num_projections=1000) == pytest.approx(3.0 / math.sqrt(2), rel=0.03)
    assert sliced_wasserstein2(x, y[:6000], num_projections=1000) == pytest.approx(3.0 / math.sqrt(2), rel=0.03)


def test_floor_is_small_and_metric_inputs_checked():
    floor = data_floor(lambda n, seed: sample_toy("moons", n, seed=seed)[0], 3000)
    assert abs(floor.energy) < 0.01 and floor.sliced_w2 < 0.08
    with pytest.raises(ValueError, match="same dimension"):
        energy_distance(torch.randn(10, 2), torch.randn(10, 3))
    with pytest.raises(ValueError, match="shape"):
        sliced_wasserstein2(torch.randn(10), torch.randn(10, 1))
    with pytest.raises(ValueError, match="unknown toy"):
        sample_toy("swissroll", 10)


def test_noise_band_of_the_unbiased_energy_distance_is_centred_on_zero():
    # Two samples of one distribution: E[energy distance] = 0 exactly (unbiased estimator),
    # while sliced W2 of finite samples is positive.
    def draw(n, seed):
        return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    band = noise_band(draw, 400, draws=20)
    assert band.n == 400 and band.draws == 20
    assert abs(band.energy_mean) < 3 * band.energy_std / 20**0.5
    lo, hi = band.energy_interval()
    assert lo < 0 < hi and hi - lo == pytest.approx(4 * band.energy_std)
    assert band.sliced_w2_mean > 3 * band.sliced_w2_std / 20**0.5 > 0
    # a shifted distribution lies far outside the band
    shifted = energy_distance(draw(400, 1) + 0.5, draw(400, 2))
    assert shifted > hi + 5 * band.energy_std
    with pytest.raises(ValueError, match="draws"):
        noise_band(draw, 10, draws=1)


def test_straightness_closed_forms():
    from soflow_mini import straightness

    t = torch.linspace(0, 1, 2001, dtype=torch.float64)[:, None, None]  # (K + 1, 1, 1)
    direction = torch.tensor([[3.0, -1.0]], dtype=torch.float64)  # one path in 2D
    assert straightness(t * direction) == pytest.approx(0.0, abs=1e-20)  # straight, constant speed
    # straight but accelerating, z = t^2 e: mean of |e - 2t e|^2 = |e|^2 / 3
    assert straightness(t**2 * direction) == pytest.approx(10 / 3, rel=1e-5)
    # a quarter circle: pi^2 / 4 - 2
    arc = torch.cat([torch.cos(torch.pi * t / 2), torch.sin(torch.pi * t / 2)], dim=-1)
    assert straightness(arc) == pytest.approx(torch.pi**2 / 4 - 2, rel=1e-5)
    with pytest.raises(ValueError, match="K >= 1"):
        straightness(arc[:1])


def test_precision_recall_matches_brute_force_and_sees_missing_modes():
    from soflow_mini import precision_recall

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 2, generator=g), torch.randn(250, 2, generator=g) * 1.5 + 0.3
    k = 3
    radius = lambda x: torch.cdist(x, x).sort(dim=1).values[:, k]  # noqa: E731  (k-th other point)
    d = torch.cdist(fake.double(), real.double())
    expected = ((d <= radius(real.double())[None]).any(1).double().mean(),
                (d <= radius(fake.double())[:, None]).any(0).double().mean())
    assert precision_recall(fake, real, k, chunk=64) == pytest.approx(tuple(map(float, expected)))
    far = fake + 100.0  # no sample near the data: precision and recall both vanish
    assert precision_recall(far, real, k) == (0.0, 0.0)
    with pytest.raises(ValueError, match="needs more than 3 samples"):
        precision_recall(fake[:3], real, 3)
