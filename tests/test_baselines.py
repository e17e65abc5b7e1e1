"""Flow matching and MeanFlow against exact Gaussian flows and finite differences."""

import pytest
import torch
from torch import nn

from soflow_mini import FlowMatching, FlowMatchingConfig, GaussianMixture, MeanFlow, MeanFlowConfig, ToyMLP
from soflow_mini.paths import expand_like


class _ExactVelocityNet(nn.Module):
    """net(x, t, s) = marginal velocity of Gaussian data at time t (s ignored)."""

    num_classes = 0

    def __init__(self, gaussian):
        super().__init__()
        self.gaussian = gaussian
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, s, y=None):
        return self.gaussian.velocity(x, t)


class _ExactAverageVelocityNet(nn.Module):
    """u(z, r, t) = (z - f(z, t, r)) / (t - r): the exact MeanFlow target for Gaussian data."""

    num_classes = 0

    def __init__(self, gaussian):
        super().__init__()
        self.gaussian = gaussian

    def forward(self, z, t, r, y=None):
        gap = expand_like(t - r, z)
        inst = self.gaussian.velocity(z, t)
        avg = (z - self.gaussian.solution(z, t, r)) / torch.where(gap == 0, torch.ones_like(gap), gap)
        return torch.where(gap == 0, inst, avg)


def test_flow_matching_loss_is_zero_for_exact_velocity_of_point_mass():
    gaussian = GaussianMixture([[0.5, 1.0]], [0.0])
    model = FlowMatching(_ExactVelocityNet(gaussian))
    x0 = gaussian.sample(64)[0]
    loss, logs = model.loss(x0, generator=torch.Generator().manual_seed(0))
    assert loss.item() < 1e-20


@pytest.mark.parametrize("solver,steps,tol", [("euler", 400, 0.01), ("heun", 20, 0.01), ("midpoint", 20, 0.01),
                                              ("rk4", 5, 0.01)])
def test_ode_samplers_reproduce_gaussian(solver, steps, tol):
    mean, std = torch.tensor([1.0, -1.0], dtype=torch.float64), 0.4
    gaussian = GaussianMixture([mean.tolist()], [std])
    model = FlowMatching(_ExactVelocityNet(gaussian))
    noise = torch.randn(1000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = model.sample(noise, steps=steps, solver=solver)
    exact = gaussian.solution(noise, torch.ones(1000, dtype=torch.float64), torch.zeros(1000, dtype=torch.float64))
    assert (x - exact).abs().max().item() < tol


def test_heun_is_second_order_and_euler_first_order():
    gaussian = GaussianMixture([[1.0, -1.0]], [0.4])
    model = FlowMatching(_ExactVelocityNet(gaussian))
    noise = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = gaussian.solution(noise, torch.ones(500, dtype=torch.float64), torch.zeros(500, dtype=torch.float64))
    err = {(s, n): (model.sample(noise, steps=n, solver=s) - exact).abs().max().item()
           for s in ("euler", "heun") for n in (10, 20)}
    assert 1.6 < err["euler", 10] / err["euler", 20] < 2.4
    assert 3.2 < err["heun", 10] / err["heun", 20] < 4.8


@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2), ("midpoint", 2), ("rk4", 4)])
@pytest.mark.parametrize("grid_power", [1.0, 2.0])
def test_solver_orders_on_uniform_and_power_grids(solver, order, grid_power):
    # Halving every step of the grid divides the global error by at least about 2 ** order
    # (midpoint does better on this linear Gaussian velocity: its leading error term vanishes).
    gaussian = GaussianMixture([[1.0, -1.0]], [0.4])
    model = FlowMatching(_ExactVelocityNet(gaussian))
    noise = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ones = torch.ones(500, dtype=torch.float64)
    exact = gaussian.solution(noise, ones, 0 * ones)
    err = [(model.sample(noise, steps=n, solver=solver, grid_power=grid_power) - exact).abs().max().item()
           for n in ((16, 32) if order == 4 else (8, 16))]
    assert err[0] / err[1] > 0.6 * 2**order


def test_time_grid_and_evaluation_counts():
    from soflow_mini.baselines.flow_matching import EVALS_PER_STEP, time_grid

    torch.testing.assert_close(time_grid(4, 2.0), torch.tensor([1.0, 0.5625, 0.25, 0.0625, 0.0]))
    with pytest.raises(ValueError, match="grid power"):
        time_grid(4, 0.0)
    calls = []

    class Counting(_ExactVelocityNet):
        def forward(self, x, t, s, y=None):
            calls.append(1)
            return super().forward(x, t, s, y)

    model = FlowMatching(Counting(GaussianMixture([[0.0, 0.0]], [1.0])))
    for solver, per_step in EVALS_PER_STEP.items():
        calls.clear()
        model.sample(torch.randn(3, 2), steps=3, solver=solver)
        assert len(calls) == 3 * per_step


def test_inference_time_guidance_combines_two_passes():
    torch.manual_seed(0)
    net = ToyMLP(width=32, depth=2, num_classes=3)
    model = FlowMatching(net)
    x, t, y = torch.randn(6, 2), torch.rand(6), torch.randint(0, 3, (6,))
    v_c, v_u = net(x, t, t, y), net(x, t, t, torch.full_like(y, 3))
    torch.testing.assert_close(model._guided_velocity(x, t, y, 2.0), v_u + 2.0 * (v_c - v_u))
    torch.testing.assert_close(model._guided_velocity(x, t, y, 1.0), v_c)


@pytest.mark.parametrize("jvp", ["detached", "autograd"])
def test_meanflow_target_matches_finite_differences(jvp):
    torch.manual_seed(0)
    net = ToyMLP(width=32, depth=2, time_scale=10.0).double()
    model = MeanFlow(net, MeanFlowConfig(jvp=jvp))
    B = 8
    z = torch.randn(B, 2, dtype=torch.float64)
    v = torch.randn(B, 2, dtype=torch.float64)
    t = torch.rand(B, dtype=torch.float64) * 0.5 + 0.4
    r = t * 0.5
    u, target = model.target(z, v, t, r, None)
    h = 1e-5
    dudt = (net(z + h * v, t + h, r) - net(z - h * v, t - h, r)) / (2 * h)
    torch.testing.assert_close(target, v - expand_like(t - r, z) * dudt, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(u, net(z, t, r))
    # r = t: the target is the instantaneous velocity itself
    _, target_eq = model.target(z, v, t, t, None)
    torch.testing.assert_close(target_eq, v)


def test_meanflow_exact_average_velocity_has_zero_loss_and_exact_samples():
    gaussian = GaussianMixture([[0.5, -0.5]], [0.0])
    model = MeanFlow(_ExactAverageVelocityNet(gaussian), MeanFlowConfig(r_equals_t=0.5))
    x0 = gaussian.sample(64)[0]
    loss, _ = model.loss(x0, generator=torch.Generator().manual_seed(0))
    assert loss.item() < 1e-12
    gaussian = GaussianMixture([[0.5, -0.5]], [0.3])
    model = MeanFlow(_ExactAverageVelocityNet(gaussian))
    noise = torch.randn(300, 2, dtype=torch.float64)
    for nfe in (1, 2):
        exact = gaussian.solution(noise, torch.ones(300, dtype=torch.float64), torch.zeros(300, dtype=torch.float64))
        torch.testing.assert_close(model.sample(noise, nfe=nfe), exact)


class _DropoutNet(nn.Module):
    """A small MLP with dropout: both JVP modes must draw the same masks for u and du/dt."""

    num_classes = 0

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 64), nn.SiLU(), nn.Dropout(0.3), nn.Linear(64, 2))

    def forward(self, z, t, r, y=None):
        return self.body(torch.cat([z, t[:, None], r[:, None]], dim=1))


@pytest.mark.parametrize("make_net", [lambda: ToyMLP(width=32, depth=2).double(), lambda: _DropoutNet().double()])
def test_meanflow_jvp_modes_give_the_same_loss_and_gradient(make_net):
    torch.manual_seed(0)
    net = make_net()
    x0 = torch.randn(64, 2, dtype=torch.float64)
    results = {}
    for mode in ("detached", "autograd"):
        model = MeanFlow(net, MeanFlowConfig(jvp=mode))
        net.zero_grad()
        torch.manual_seed(1)  # dropout masks
        loss, _ = model.loss(x0, generator=torch.Generator().manual_seed(2))
        loss.backward()
        results[mode] = loss.detach(), [p.grad.clone() for p in net.parameters()]
    (loss_d, grad_d), (loss_a, grad_a) = results["detached"], results["autograd"]
    assert loss_d.item() > 0
    torch.testing.assert_close(loss_d, loss_a)
    for g_d, g_a in zip(grad_d, grad_a):
        torch.testing.assert_close(g_d, g_a)


def _saved_bytes(loss_fn) -> int:
    """Bytes of the tensors autograd keeps for backward while ``loss_fn`` runs."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_fn()
    return total


def test_meanflow_detached_jvp_keeps_about_flow_matchings_activations():
    net = ToyMLP(width=256, depth=4)
    x0 = torch.randn(512, 2)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    fm = _saved_bytes(lambda: FlowMatching(net).loss(x0, generator=gen()))
    lean = _saved_bytes(lambda: MeanFlow(net, MeanFlowConfig(jvp="detached")).loss(x0, generator=gen()))
    full = _saved_bytes(lambda: MeanFlow(net, MeanFlowConfig(jvp="autograd")).loss(x0, generator=gen()))
    assert lean < 1.2 * fm
    assert full > 2.5 * lean


def test_meanflow_time_sampling_fraction():
    model = MeanFlow(ToyMLP(width=8, depth=1), MeanFlowConfig(r_equals_t=0.75))
    t, r = model.sample_times(400, generator=torch.Generator().manual_seed(0))
    assert (r <= t).all() and (r == t).sum() >= 300
    loss, logs = model.loss(torch.randn(16, 2))
    loss.backward()
    assert torch.isfinite(loss) and "mf_mse" in logs


def test_baseline_configs_reject_bad_values():
    with pytest.raises(ValueError, match="time_std"):
        FlowMatchingConfig(time_std=0)
    with pytest.raises(ValueError, match="noising_type"):
        FlowMatchingConfig(noising_type="cosine")
    with pytest.raises(ValueError, match="p must"):
        MeanFlowConfig(p=-1)
    with pytest.raises(ValueError, match="jvp"):
        MeanFlowConfig(jvp="forward")
    with pytest.raises(ValueError, match="solver"):
        FlowMatching(ToyMLP(width=8, depth=1)).sample(torch.randn(2, 2), solver="rk45")



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_meanflow_trains_a_dit_under_cuda_bf16_autocast():
    # torch's JVP through the math attention fails under CUDA bf16 autocast (mismatched
    # softmax dtypes); MeanFlow runs that pass in fp32 and must train.
    from soflow_mini import build_dit

    torch.manual_seed(0)
    model = MeanFlow(build_dit("DiT-T/4", 16, 4, 10).to("cuda"))
    x, y = torch.randn(4, 4, 16, 16, device="cuda"), torch.randint(0, 10, (4,), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _ = model.loss(x, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_trajectory_is_the_path_sample_follows():
    from soflow_mini import straightness
    from soflow_mini.baselines.flow_matching import time_grid

    gaussian = GaussianMixture([[1.0, -1.0]], [0.4])
    model = FlowMatching(_ExactVelocityNet(gaussian))
    noise = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    path = model.trajectory(noise, steps=16, solver="rk4")
    assert path.shape == (17, 200, 2)
    torch.testing.assert_close(path[0], noise)
    torch.testing.assert_close(path[-1], model.sample(noise, steps=16, solver="rk4"))
    ones = torch.ones(200, dtype=torch.float64)
    for i, t in enumerate(time_grid(16, dtype=torch.float64)):  # every state on the exact ODE solution
        torch.testing.assert_close(path[i], gaussian.solution(noise, ones, t * ones), atol=1e-5, rtol=0)
    # for a point mass the marginal paths are the straight conditional ones, x_t = (1 - t) x_0 + t x_1
    point = FlowMatching(_ExactVelocityNet(GaussianMixture([[0.5, 1.0]], [0.0])))
    assert straightness(point.trajectory(noise, steps=8)) < 1e-20
    assert straightness(path) > 1e-3  # the Gaussian's paths bend
