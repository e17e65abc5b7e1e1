import pytest
import torch
from torch import nn

from soflow_mini import EMA, train_toy


def test_update_is_exponential_average():
    model = nn.Linear(3, 2)
    start = model.weight.detach().clone()
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], start + 0.1)


def test_warmup_decay_and_float64_shadow():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.999, warmup=True, dtype=torch.float64)
    assert ema.shadow["weight"].dtype == torch.float64
    assert ema.current_decay() == pytest.approx(1 / 10)
    ema.update(model)
    assert ema.current_decay() == pytest.approx(2 / 11)
    ema.num_updates = 10**6
    assert ema.current_decay() == 0.999


def test_swap_in_restores_online_weights_and_state_round_trip():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    online = model.weight.detach().clone()
    with torch.no_grad():
        ema.shadow["weight"].fill_(7.0)
    with ema.swap_in(model):
        assert torch.equal(model.weight, torch.full_like(online, 7.0))
    assert torch.equal(model.weight, online)
    other = EMA(nn.Linear(2, 2), decay=0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.5 and torch.equal(other.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.5)


def test_train_toy_keeps_an_average_of_the_weights():
    from soflow_mini import SoFlow, SoFlowConfig, ToyMLP, train_toy

    model = SoFlow(ToyMLP(width=16, depth=1), SoFlowConfig.preset("toy"))
    history = train_toy(model, torch.randn(256, 2), steps=5, batch_size=32, ema_decay=0.5)
    assert history.ema is not None and history.ema.num_updates == 5
    online = model.net.inp.weight.detach().clone()
    with history.ema.swap_in(model):
        assert torch.equal(model.net.inp.weight, history.ema.shadow["net.inp.weight"])
    assert torch.equal(model.net.inp.weight, online)
    assert train_toy(model, torch.randn(64, 2), steps=1, batch_size=8).ema is None


def test_learning_rate_schedules_of_train_toy():
    from soflow_mini.toy_training import learning_rate_factor

    # linear warm-up to 1, then the cosine from 1 down to 0 at the last step
    assert [learning_rate_factor(k, 10, "constant", 2) for k in (0, 1, 5, 9)] == [0.5, 1.0, 1.0, 1.0]
    assert learning_rate_factor(2, 10, "cosine", 2) == pytest.approx(1.0)
    assert learning_rate_factor(6, 10, "cosine", 2) == pytest.approx(0.5)
    assert learning_rate_factor(10, 10, "cosine", 2) == pytest.approx(0.0)
    # the optimiser sees base lr times the factor at every step
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))

        def loss(self, x0, y=None, *, step, total_steps, generator=None):
            seen.append(step)
            return ((x0 - self.w) ** 2).mean(), {}

    model = Probe()
    lrs = []
    original_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    torch.optim.AdamW.step = recording_step
    try:
        train_toy(model, torch.randn(64, 2), steps=8, batch_size=4, lr=0.1, lr_schedule="cosine", warmup_steps=2)
    finally:
        torch.optim.AdamW.step = original_step
    assert lrs == pytest.approx([0.1 * learning_rate_factor(k, 8, "cosine", 2) for k in range(8)])
    with pytest.raises(ValueError, match="lr_schedule"):
        train_toy(model, torch.randn(64, 2), steps=2, lr_schedule="linear")
