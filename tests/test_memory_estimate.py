"""Memory and compute estimates: saved-activation counts against known answers, the presets' micro-batches."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from soflow_mini.nets import build_dit
from soflow_mini.nets.flops import dit_flops_of
from soflow_mini.train import build_config
from soflow_mini.train.compute import (
    MEASURED, _calibration, estimate_memory, forward_flops, saved_activation_bytes,
)
from soflow_mini.train.data import DataSpec


class TwoLayer(nn.Module):
    """loss = mean((x W)^2): autograd keeps x (for W's gradient) and x W (for the square)."""

    def __init__(self, d=5, k=3):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, k))

    def forward(self, x0, y=None, *, step, total_steps):
        h = x0 @ self.w  # (B, k)
        return h.pow(2).mean(), {}


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_saved_bytes_of_a_known_graph(device):
    model = TwoLayer().to(device)
    x = torch.randn(7, 5, device=device)
    assert saved_activation_bytes(model, x) == 4 * 7 * (5 + 3)  # float32 x and h, the weight excluded


def test_generic_flop_count_equals_the_dit_count():
    net = build_dit("DiT-T/2", input_size=8, in_channels=1, num_classes=10)
    spec = DataSpec("image", (1, 8, 8), 10)
    x, t = torch.zeros(1, 1, 8, 8), torch.full((1,), 0.5)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, t, t, torch.zeros(1, dtype=torch.long))
    assert forward_flops(net, spec) == dit_flops_of(net).total
    assert counter.get_total_flops() == pytest.approx(dit_flops_of(net).total, rel=0.02)


def test_estimate_reproduces_the_measurement_and_counts_static_bytes():
    calibration = _calibration()
    assert 0.5 < calibration < 1.5  # the count predicts the measured peak to within 50 %
    config = build_config(MEASURED.preset, MEASURED.overrides)
    estimate = estimate_memory(config, calibration=calibration)
    measured = MEASURED.peak_mib * 2**20
    assert estimate.bytes_per_sample * MEASURED.batch + 4 * estimate.parameters == pytest.approx(measured, rel=1e-9)
    assert estimate.static_bytes == estimate.parameters * (4 + 4 + 8 + 4)
    cifar = estimate_memory(build_config("cifar10-dit"), calibration=calibration)  # float64 EMA
    assert cifar.static_bytes == cifar.parameters * (4 + 4 + 8 + 8)


@pytest.mark.parametrize("name", ["cifar10-dit", "imagenet256-b2", "imagenet256-xl2"])
def test_gpu_presets_fit_80_gb_per_pass(name):
    """The default pass (micro_batch, or the whole batch) fits an 80 GB GPU by the estimate
    with 10 % to spare; the whole batch would not where a micro_batch is set. (Three presets:
    the smallest and largest pass memory; README's table lists all.)"""
    calibration = _calibration()
    config = build_config(name)
    estimate = estimate_memory(config, calibration=calibration)
    per_pass = config.train.micro_batch or config.train.batch_size
    assert estimate.peak_bytes(per_pass) < 0.9 * 80e9
    if config.train.micro_batch:
        assert estimate.peak_bytes(config.train.batch_size) > 80e9
    else:
        assert name == "imagenet256-b2"
