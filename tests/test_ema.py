import pytest
import torch
from torch import nn

from soflow_mini import EMA


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
