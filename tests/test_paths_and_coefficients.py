"""Noising paths and solution coefficients against autograd and their defining identities."""

import math

import pytest
import torch

from soflow_mini import SoFlow, SoFlowConfig, ToyMLP, get_coefficients, get_path
from soflow_mini.paths import PATHS
from soflow_mini.coefficients import COEFFICIENTS


@pytest.mark.parametrize("name", sorted(PATHS))
def test_path_derivatives_equal_autograd(name):
    path = get_path(name)
    t = torch.linspace(0.01, 0.99, 17, dtype=torch.float64, requires_grad=True)
    for fn, dfn in ((path.alpha, path.d_alpha), (path.beta, path.d_beta)):
        (grad,) = torch.autograd.grad(fn(t).sum(), t)
        torch.testing.assert_close(dfn(t.detach()), grad)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_path_endpoints_and_interpolation(name):
    path = get_path(name)
    x0, x1 = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    xt, _ = path.interpolate(x0, x1, torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(xt, x0)
    xt, _ = path.interpolate(x0, x1, torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(xt, x1, atol=1e-12, rtol=0)
    # v_t is the time derivative of x_t along the pair (x0, x1)
    t = torch.rand(4, dtype=torch.float64)
    _, v = path.interpolate(x0, x1, t)
    h = 1e-6
    fd = (path.interpolate(x0, x1, t + h)[0] - path.interpolate(x0, x1, t - h)[0]) / (2 * h)
    torch.testing.assert_close(v, fd, atol=1e-7, rtol=0)


def test_linear_velocity_is_noise_minus_data():
    x0, x1 = torch.randn(5, 2), torch.randn(5, 2)
    _, v = get_path("linear").interpolate(x0, x1, torch.rand(5))
    torch.testing.assert_close(v, x1 - x0)


@pytest.mark.parametrize("name", sorted(COEFFICIENTS))
def test_coefficients_boundary_and_derivatives(name):
    c = get_coefficients(name)
    t = torch.rand(9, dtype=torch.float64)
    torch.testing.assert_close(c.a(t, t), torch.ones_like(t))
    torch.testing.assert_close(c.b(t, t), torch.zeros_like(t))
    s = t.clone().requires_grad_(True)
    (da,) = torch.autograd.grad((c.a(t, s) + 0 * s).sum(), s)  # a may not depend on s
    (db,) = torch.autograd.grad(c.b(t, s).sum(), s)
    torch.testing.assert_close(da, torch.full_like(t, c.ds_a))
    torch.testing.assert_close(db, torch.full_like(t, c.ds_b))


@pytest.mark.parametrize("coefficient_type", sorted(COEFFICIENTS))
def test_solution_at_s_equal_t_is_identity_exactly(coefficient_type):
    net = ToyMLP(width=32, depth=2)
    with torch.no_grad():  # a network far from zero, so F contributes unless b = 0 exactly
        for p in net.parameters():
            p.normal_()
    model = SoFlow(net, SoFlowConfig(coefficient_type=coefficient_type))
    x = torch.randn(64, 2)
    t = torch.rand(64)
    assert torch.equal(model.solution(x, t=t, s=t), x)


@pytest.mark.parametrize("coefficient_type", sorted(COEFFICIENTS))
def test_velocity_is_s_derivative_of_solution(coefficient_type):
    net = ToyMLP(width=32, depth=2).double()
    model = SoFlow(net, SoFlowConfig(coefficient_type=coefficient_type))
    x = torch.randn(8, 2, dtype=torch.float64)
    t = torch.rand(8, dtype=torch.float64) * 0.8 + 0.1
    s = t.clone().requires_grad_(True)
    f = model.solution(x, t=t, s=s)
    # d f_i / d s_i, one coordinate at a time (samples are independent)
    ds = torch.stack([torch.autograd.grad(f[:, k].sum(), s, retain_graph=True)[0] for k in range(2)], dim=1)
    torch.testing.assert_close(model.velocity(x, t), ds)


def test_trig_coefficients_closed_form():
    c = get_coefficients("trig")
    t, s = torch.tensor([0.9]), torch.tensor([0.4])
    torch.testing.assert_close(c.a(t, s), torch.tensor([math.cos(-0.25 * math.pi)]))
    torch.testing.assert_close(c.b(t, s), torch.tensor([math.sin(-0.25 * math.pi)]))
