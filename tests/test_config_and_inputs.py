"""Every option resolves; bad input raises a ValueError that names the argument."""

import pytest
import torch

from soflow_mini import LOSS_PRESETS, SoFlow, SoFlowConfig, ToyMLP, l_ratio
from soflow_mini.baselines.flow_matching import SOLVERS
from soflow_mini.coefficients import COEFFICIENTS
from soflow_mini.paths import PATHS
from soflow_mini.time_sampling import L_SCHEDULES, intermediate_time, sample_consistency_times


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("coefficients", sorted(COEFFICIENTS))
@pytest.mark.parametrize("schedule", sorted(L_SCHEDULES))
def test_every_choice_builds_and_trains_one_step(path, coefficients, schedule):
    config = SoFlowConfig(noising_type=path, coefficient_type=coefficients, l_schedule=schedule)
    model = SoFlow(ToyMLP(width=16, depth=1), config)
    loss, logs = model.loss(torch.randn(8, 2), step=3, total_steps=10)
    loss.backward()
    assert torch.isfinite(loss) and set(logs) >= {"loss", "fm_mse", "scm_mse"}


@pytest.mark.parametrize("name", sorted(LOSS_PRESETS))
def test_presets_resolve(name):
    config = SoFlowConfig.preset(name)
    assert config.to_dict() == SoFlowConfig(**config.to_dict()).to_dict()


def test_published_presets():
    imagenet = SoFlowConfig.preset("imagenet256")
    assert (imagenet.velocity_loss_ratio, imagenet.cfg_scale, imagenet.mix_ratio, imagenet.l_end_ratio) == (0.75, 3.0, 0.25, 0.002)
    cifar = SoFlowConfig.preset("cifar10")
    assert (cifar.velocity_loss_ratio, cifar.p, cifar.eps, cifar.time_mean) == (0.0, 0.75, 1e-3, (-0.9, -4.0, -0.9))


def test_author_spellings_and_yaml(tmp_path):
    config = SoFlowConfig(noising_type="Linear", coefficient_type="Euler", l_schedule="Exponent")
    assert (config.noising_type, config.coefficient_type, config.l_schedule) == ("linear", "euler", "exponent")
    assert SoFlowConfig(l_schedule="Constant").l_schedule == "const"
    (tmp_path / "config.yaml").write_text(
        "model_type: DiT-B-2\nvelocity_loss_ratio: 0.5\nnoising_type: Trig\ncoefficient_type: Triangular\n"
        "time_mean: [-0.2, -1.0, 0.2]\nl_schedule: Cosine\ncfg_scale: 2.0\nlearning_rate: 0.0001\n"
    )
    config = SoFlowConfig.from_yaml(tmp_path / "config.yaml")
    assert (config.velocity_loss_ratio, config.noising_type, config.l_schedule, config.cfg_scale) == (0.5, "trig", "cosine", 2.0)
    assert config.coefficient_type == "trig"  # "Triangular", the name in the authors' YAML comments


@pytest.mark.parametrize("kwargs,match", [
    (dict(noising_type="cosine"), "noising_type"),
    (dict(coefficient_type="rk4"), "coefficient_type"),
    (dict(l_schedule="step"), "l_schedule"),
    (dict(p=-0.5), "p must be >= 0"),
    (dict(eps=0.0), "eps"),
    (dict(velocity_loss_ratio=1.5), "velocity_loss_ratio"),
    (dict(time_mean=(0.0, 1.0)), "time_mean"),
    (dict(time_std=(1.0, 0.0, 1.0)), "time_std"),
    (dict(cfg_decay_time=1.5), "cfg_decay_time"),
    (dict(l_init_ratio=0.0), "l_init_ratio"),
    (dict(cfg_scale=3.0, cfg_drop_rate=0.0), "needs cfg_drop_rate > 0"),
])
def test_bad_config_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SoFlowConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown loss preset 'imagenet512'; did you mean 'imagenet256'"):
        SoFlowConfig.preset("imagenet512")


def test_schedules_run_from_init_to_end():
    for name in ("linear", "cosine", "exponent"):
        assert l_ratio(name, 0.1, 0.002, 0, 100) == pytest.approx(0.1)
        assert l_ratio(name, 0.1, 0.002, 100, 100) == pytest.approx(0.002)
        assert l_ratio(name, 0.1, 0.002, 50, 100) < 0.1
    assert l_ratio("const", 0.1, 0.002, 0, 100) == 0.002
    assert l_ratio("exponent", 0.1, 0.002, 50, 100) == pytest.approx((0.1 * 0.002) ** 0.5)
    assert l_ratio("cosine", 0.1, 0.002, 50, 100) == pytest.approx(0.051)
    with pytest.raises(ValueError, match="total_steps"):
        l_ratio("linear", 0.1, 0.002, 0, 0)


def test_consistency_times_are_ordered():
    t, s = sample_consistency_times(5000, (-1.0, 0.2), (0.8, 0.8), generator=torch.Generator().manual_seed(0))
    l = intermediate_time(t, s, 0.1)
    assert (s >= 0).all() and (t <= 1).all()
    assert (s <= l).all() and (l < t).all() and (t - l >= 1e-4 - 1e-7).all()
    assert (s.mean() < t.mean())
    # pairs closer than the minimum gap: l stays in [s, t)
    t, s = torch.tensor([0.5, 0.5]), torch.tensor([0.49995, 0.2])
    l = intermediate_time(t, s, 0.01)
    assert (s <= l).all() and (l < t).all()
    assert l[1].item() == pytest.approx(0.497)


def test_solvers_resolve():
    from soflow_mini import FlowMatching
    model = FlowMatching(ToyMLP(width=8, depth=1))
    for solver in SOLVERS:
        assert model.sample(torch.randn(3, 2), steps=2, solver=solver.upper()).shape == (3, 2)


@pytest.fixture
def model():
    return SoFlow(ToyMLP(width=16, depth=1, num_classes=3), SoFlowConfig())


@pytest.mark.parametrize("call,match", [
    (lambda m: m.solution(torch.randn(4, 2), t=1.5, s=0.0), "t must lie in"),
    (lambda m: m.solution(torch.randn(4, 2), t=0.5, s=-0.1), "s must lie in"),
    (lambda m: m.solution(torch.randn(4, 2), t=0.3, s=0.6), "s must be <= t"),
    (lambda m: m.solution(torch.randn(4, 2), t=torch.rand(3), s=0.0), r"t must have shape \(4,\)"),
    (lambda m: m.solution(torch.randn(4, 2), t=torch.rand(4, 1), s=0.0), r"t must have shape \(4,\)"),
    (lambda m: m.solution(torch.randn(4), t=0.5, s=0.0), "x_t must have at least 2 dimensions"),
    (lambda m: m.solution(torch.randint(0, 3, (4, 2)), t=0.5, s=0.0), "x_t must be a floating"),
    (lambda m: m.velocity(torch.randn(4, 2), torch.full((4,), float("nan"))), "t must lie in"),
    (lambda m: m.velocity(torch.randn(4, 2), 0.5, torch.tensor([0, 1, 4, 2])), r"y must hold class labels in \[0, 2\], got values in \[0, 4\]"),
    (lambda m: m.velocity(torch.randn(4, 2), 0.5, torch.tensor([0, 1])), r"y must be an integer tensor of shape \(4,\)"),
    (lambda m: m.velocity(torch.randn(4, 2), 0.5, torch.rand(4)), "integer class labels"),
    (lambda m: m.flow_matching_loss(torch.randn(4, 2), torch.randn(5, 2), torch.rand(4)), "noise must have the shape of x0"),
    (lambda m: m.consistency_loss(torch.randn(4, 2), torch.randn(4, 2), t=torch.full((4,), 0.5), l=torch.full((4,), 0.5), s=torch.zeros(4)), "l must be < t"),
    (lambda m: m.consistency_loss(torch.randn(4, 2), torch.randn(4, 2), t=torch.full((4,), 0.5), l=torch.full((4,), 0.1), s=torch.full((4,), 0.2)), "s must be <= l"),
    (lambda m: m.flow_matching_loss(torch.randn(4, 2), torch.randn(4, 2), torch.rand(4), cfg_mask=torch.ones(4, dtype=torch.bool)), "cfg_mask needs labels"),
    (lambda m: m.flow_matching_loss(torch.randn(4, 2), torch.randn(4, 2), torch.rand(4), torch.zeros(4, dtype=torch.long), cfg_mask=torch.ones(4)), "cfg_mask must be a bool"),
    (lambda m: m.loss(torch.randn(4, 2), torch.tensor([0, 1]), step=0, total_steps=1), r"y must be an integer tensor of shape \(4,\)"),
    (lambda m: m.sample(torch.randn(4, 2), nfe=0), "nfe must be a positive integer"),
])
def test_bad_inputs_name_the_argument(model, call, match):
    with pytest.raises(ValueError, match=match):
        call(model)


def test_unconditional_model_rejects_labels():
    model = SoFlow(ToyMLP(width=8, depth=1), SoFlowConfig())
    with pytest.raises(ValueError, match="unconditional"):
        model.loss(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), step=0, total_steps=1)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        model.loss(torch.randn(4, 3), step=0, total_steps=1)


def test_flow_matching_guidance_needs_label_dropout():
    from soflow_mini import FlowMatching, FlowMatchingConfig
    model = FlowMatching(ToyMLP(width=8, depth=1, num_classes=2), FlowMatchingConfig(cfg_drop_rate=0.0))
    with pytest.raises(ValueError, match="cfg_drop_rate > 0"):
        model.sample(torch.randn(2, 2), torch.tensor([0, 1]), steps=2, cfg_scale=2.0)
