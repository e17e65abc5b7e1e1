"""The analytic FLOP count of a DiT against torch's FLOP counter; training compute estimates."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from soflow_mini.nets import DiT, build_dit
from soflow_mini.nets.flops import dit_flops, dit_flops_by_name, dit_flops_of
from soflow_mini.train import build_config
from soflow_mini.train.compute import passes_per_sample, training_compute


def counted_flops(net: DiT, batch: int, num_classes: int) -> int:
    """FLOPs that torch.utils.flop_counter sees in one forward pass (attention through the
    math backend, whose matrix products the counter sees; the fused CPU kernel it does not)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, net.in_channels, *net.input_size, generator=g)
    t = torch.rand(batch, generator=g)
    y = torch.randint(0, num_classes, (batch,), generator=g) if num_classes else None
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        net(x, t, 0.5 * t, y)
    return counter.get_total_flops()


@pytest.mark.parametrize("kwargs", [
    dict(input_size=8, in_channels=1, num_classes=10, patch_size=2, hidden_size=64, depth=2, num_heads=4),
    dict(input_size=(8, 12), in_channels=3, num_classes=0, patch_size=4, hidden_size=32, depth=3, num_heads=2),
    dict(input_size=16, in_channels=4, num_classes=5, patch_size=2, hidden_size=48, depth=1, num_heads=3,
         mlp_ratio=2.0),
])
def test_analytic_count_equals_torch_flop_counter(kwargs):
    torch.manual_seed(0)
    net = DiT(**kwargs).eval()
    analytic = dit_flops_of(net)
    batch = 3
    assert counted_flops(net, batch, kwargs["num_classes"]) == batch * analytic.total
    assert analytic.macs * 2 == analytic.total
    h, w = (kwargs["input_size"],) * 2 if isinstance(kwargs["input_size"], int) else kwargs["input_size"]
    assert analytic.tokens == (h // kwargs["patch_size"]) * (w // kwargs["patch_size"])


def test_count_from_name_and_from_a_meta_device_model_agree():
    with torch.device("meta"):
        net = build_dit("DiT-XL/2", 32, 4, 1000)
    assert dit_flops_of(net) == dit_flops_by_name("DiT-XL/2", 32, 4)
    # patch 2 on a 32 x 32 latent: 256 tokens; patch 4: 64 tokens, about a quarter of the FLOPs
    b2, b4 = dit_flops_by_name("DiT-B/2"), dit_flops_by_name("DiT-B/4")
    assert (b2.tokens, b4.tokens) == (256, 64)
    assert 3.5 < b2.total / b4.total < 4.5
    with pytest.raises(ValueError, match="unknown DiT size"):
        dit_flops_by_name("DiT-XXL/2")
    with pytest.raises(ValueError, match="divisible"):
        dit_flops(input_size=30, in_channels=4, patch_size=4, hidden_size=64, depth=1)


def test_training_compute_counts_the_soflow_passes():
    imagenet = build_config("imagenet256-b2")  # ratio 0.75, guidance: 3 + 0.25 + (1 + 0.25)
    assert passes_per_sample(imagenet) == pytest.approx(4.5)
    assert passes_per_sample(imagenet, conditional=False) == pytest.approx(3.25)
    assert passes_per_sample(build_config("cifar10")) == pytest.approx(4.0)  # ratio 0: 3 + 1, no guidance
    assert passes_per_sample(build_config("cifar10", {"train.method": "flow_matching"})) == 3.0
    with pytest.raises(ValueError, match="meanflow"):
        passes_per_sample(build_config("cifar10", {"train.method": "meanflow"}))

    estimate = training_compute(imagenet)
    forward = dit_flops_by_name("DiT-B/2", 32, 4).total
    assert estimate.forward_flops == forward
    assert estimate.samples == 1_201_094 * 256
    assert estimate.total_flops == pytest.approx(forward * 4.5 * 1_201_094 * 256)
    assert estimate.gpu_hours(1e15) == pytest.approx(estimate.total_flops / 1e15 / 3600)
    assert training_compute(build_config("digits")).forward_flops == dit_flops_by_name("DiT-T/2", 8, 1).total
    with pytest.raises(ValueError, match="image runs"):
        training_compute(build_config("toy-moons"))
