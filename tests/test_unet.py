"""SongUNet (the CIFAR-10 U-Net): published size and names, time embedding, attention, the
network contract with augmentation labels, and dropout masks shared by SoFlow's two passes."""

import math

import pytest
import torch
import torch.nn.functional as F

from soflow_mini import SoFlow, SoFlowConfig, SongUNet, build_unet
from soflow_mini.nets.unet import UNET_CONFIGS, Conv2d, UNetBlock, positional_embedding
from soflow_mini.soflow import _same_randomness


def _tiny(**kw):
    return build_unet("tiny", img_resolution=8, **kw)


def test_paper_configuration_size_and_names():
    with torch.device("meta"):
        net = SongUNet.cifar10()
    sd = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == 55_932_419
    assert len(sd) == 425
    for name in ("map_augment.weight", "map_layer0.weight", "map_layer1.bias", "enc.32x32_conv.weight",
                 "enc.16x16_down.conv0.weight", "enc.16x16_block0.qkv.weight", "dec.8x8_in0.proj.weight",
                 "dec.32x32_aux_norm.weight", "dec.32x32_aux_conv.bias"):
        assert name in sd
    assert sd["map_augment.weight"].shape == (512, 6) and "map_augment.bias" not in sd  # Linear 6 -> 512, no bias
    assert sd["map_layer0.weight"].shape == (512, 512)  # [PE(t) (256), PE(t - s) (256)] -> 512
    assert sd["enc.32x32_conv.weight"].shape == (128, 3, 3, 3)
    assert sd["dec.32x32_aux_conv.weight"].shape == (3, 256, 3, 3)
    assert net.num_classes == 0 and not any(k.startswith("map_label") for k in sd)
    # Persistent FIR filters of the 8 resampling convs (conv0 and skip of 2 down + 2 up blocks).
    filters = [k for k in sd if k.endswith("resample_filter")]
    assert len(filters) == 8 and all(sd[k].shape == (1, 1, 4, 4) for k in filters)
    assert net.enc["16x16_block0"].norm0.num_groups == 32 and net.enc["16x16_block0"].norm0.eps == 1e-6
    assert net.enc["16x16_block0"].drop.p == 0.30


def test_positional_embedding_closed_form():
    t = torch.tensor([0.0, 0.3, 1.0])
    emb = positional_embedding(t, 256)
    i = torch.arange(128, dtype=torch.float32)
    w = 10_000.0 ** (-i / 127)  # endpoint: the last frequency is exactly 1e-4
    torch.testing.assert_close(emb[:, :128], torch.sin(t[:, None] * w))  # halves swapped: sin first
    torch.testing.assert_close(emb[:, 128:], torch.cos(t[:, None] * w))


def test_attention_block_equals_softmax_formula():
    block = UNetBlock(16, 16, 8, attention=True).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x, emb = torch.randn(2, 16, 4, 4), torch.randn(2, 8)
    h = block.conv0(F.silu(block.norm0(x)))
    h = block.conv1(F.silu(block.norm1(h + block.affine(emb)[:, :, None, None])))
    h = (h + x) / math.sqrt(2)
    qkv = block.qkv(block.norm2(h)).reshape(2, 16, 3, 16)  # channel layout (c, {q, k, v})
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, C, HW)
    w = torch.softmax(torch.einsum("bcq,bck->bqk", q, k) / 4.0, dim=2)  # 1 / sqrt(C)
    a = torch.einsum("bqk,bck->bcq", w, v).reshape(2, 16, 4, 4)
    expected = (block.proj(a) + h) / math.sqrt(2)
    torch.testing.assert_close(block(x, emb), expected, atol=1e-5, rtol=1e-5)


def test_resampling_keeps_constants_and_shapes():
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    for kw, side in ((dict(down=True), 4), (dict(up=True), 16)):
        conv = Conv2d(2, 2, 1, **kw)
        torch.testing.assert_close(conv.resample_filter[0, 0], torch.outer(f, f) / 64)
        with torch.no_grad():
            conv.weight.copy_(torch.eye(2)[:, :, None, None])
            conv.bias.zero_()
        out = conv(torch.full((1, 2, 8, 8), 2.0))
        assert out.shape == (1, 2, side, side)
        torch.testing.assert_close(out[..., 2:-2, 2:-2], torch.full_like(out[..., 2:-2, 2:-2], 2.0))  # interior


def test_contract_and_augment_labels():
    net = _tiny().eval()
    for p in net.parameters():  # the zero-like initialisation would hide the conditioning
        torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(3, 3, 8, 8), torch.rand(3)
    s = 0.5 * t
    out = net(x, t, s)
    assert out.shape == x.shape
    torch.testing.assert_close(net(x, t, s, augment_labels=torch.zeros(3, 6)), out)  # zeros = none
    assert not torch.allclose(net(x, t, s, augment_labels=torch.ones(3, 6)), out)
    assert not torch.allclose(net(x, t, 0.9 * t), out)  # s enters through t - s
    with pytest.raises(ValueError, match="unconditional"):
        net(x, t, s, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"augment_labels must have shape \(B, 6\)"):
        net(x, t, s, augment_labels=torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, 8, 8\)"):
        net(torch.randn(3, 3, 16, 16), t, s)
    with pytest.raises(ValueError, match="augment_dim=0"):
        _tiny(augment_dim=0)(x, t, s, augment_labels=torch.zeros(3, 6))
    with pytest.raises(ValueError, match="unknown U-Net configuration"):
        build_unet("cifar100")
    with pytest.raises(ValueError, match="img_resolution"):
        SongUNet(img_resolution=30)


def test_fresh_net_output_is_near_zero():
    net = _tiny()  # the last conv of every branch starts at 1e-5 times the xavier scale
    out = net(torch.randn(4, 3, 8, 8), torch.rand(4), torch.zeros(4))
    assert 0 < out.abs().max() < 1e-3


def test_bf16_autocast_forward_runs():
    net = _tiny().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, torch.rand(2), torch.zeros(2))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_dropout_masks_repeat_under_the_forked_random_state():
    net = _tiny(dropout=0.5).train()
    x, t = torch.randn(4, 3, 8, 8), torch.rand(4)
    assert not torch.equal(net(x, t, t), net(x, t, t))  # dropout is active
    with _same_randomness(x.device, True):
        first = net(x, t, t)
    torch.testing.assert_close(net(x, t, t), first, rtol=0, atol=0)


def test_consistency_residual_uses_the_same_dropout_masks_in_both_passes():
    torch.manual_seed(0)
    net = _tiny(dropout=0.5)
    for m in net.modules():  # give the residual branches a visible output
        if isinstance(m, Conv2d):
            torch.nn.init.xavier_uniform_(m.weight)
    model = SoFlow(net, SoFlowConfig.preset("cifar10")).train()
    B = 4
    x0, noise, aug = torch.randn(B, 3, 8, 8), torch.randn(B, 3, 8, 8), 0.5 * torch.randn(B, 6)
    t, l, s = torch.full((B,), 0.8), torch.full((B,), 0.79), torch.full((B,), 0.1)
    torch.manual_seed(7)
    loss, logs = model.consistency_loss(x0, noise, t=t, l=l, s=s, augment_labels=aug)

    def residual(same_masks: bool):
        torch.manual_seed(7)
        x_t = 0.2 * x0 + 0.8 * noise
        x_l = x_t - 0.01 * (noise - x0)  # one Euler step along the conditional velocity
        with torch.no_grad():
            state = torch.get_rng_state()
            f_l = x_l + (s - l).view(-1, 1, 1, 1) * net(x_l, l, s, augment_labels=aug)
            if same_masks:
                torch.set_rng_state(state)
            F_t = net(x_t, t, s, augment_labels=aug)
        f_t = x_t + (s - t).view(-1, 1, 1, 1) * F_t
        delta = (f_t - f_l) / 0.01
        return F_t, delta, delta.flatten(1).pow(2).mean(1)

    F_t, delta, mse = residual(same_masks=True)
    torch.testing.assert_close(logs["scm_mse"], mse.mean(), rtol=1e-4, atol=1e-6)
    w = 1.0 / (mse + 1e-3) ** 0.75
    expected = -(F_t * w.view(-1, 1, 1, 1) * delta).flatten(1).mean(1).mean()  # sign(b) = -1
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-7)
    _, _, independent = residual(same_masks=False)
    assert independent.mean() > 2 * mse.mean()  # fresh masks would swamp the residual


class _Recorder(torch.nn.Module):
    """F = 0.1 x + labels' first column, recording the augmentation labels of each call."""

    def __init__(self, num_classes=0):
        super().__init__()
        self.num_classes = num_classes
        self.scale = torch.nn.Parameter(torch.tensor(0.1))
        self.calls = []

    def forward(self, x, t, s, y=None, augment_labels=None):
        self.calls.append(None if augment_labels is None else augment_labels.clone())
        bump = 0 if augment_labels is None else augment_labels[:, :1, None, None]
        return self.scale * x + bump


@pytest.mark.parametrize("guided", [False, True])
def test_augment_labels_reach_both_loss_terms(guided):
    net = _Recorder(num_classes=3 if guided else 0)
    config = SoFlowConfig(velocity_loss_ratio=0.5, cfg_scale=2.0 if guided else 1.0,
                          cfg_drop_rate=1e-9 if guided else 0.0)  # guidance needs label dropout on
    model = SoFlow(net, config)
    B = 6
    aug = torch.arange(B, dtype=torch.float32)[:, None].repeat(1, 6)  # row ids
    y = torch.randint(0, 3, (B,)) if guided else None
    model.loss(torch.randn(B, 3, 4, 4), y, step=0, total_steps=10, augment_labels=aug)
    rows = [c[:, 0].tolist() for c in net.calls]
    assert [0, 1, 2, 3, 4, 5] in rows  # the gradient pass (FM rows 0-2, SCM rows 3-5)
    assert [3, 4, 5] in rows  # the no-grad pass at (x_l, l, s)
    if guided:
        assert [0, 1, 2, 3, 4, 5, 3, 4, 5] in rows  # the guidance pass
    net.calls.clear()
    model.sample(torch.randn(2, 3, 4, 4), y[:2] if guided else None, nfe=2)
    assert net.calls == [None, None]  # sampling: no augmentation
    with pytest.raises(ValueError, match=r"augment_labels must be a tensor of shape \(B, k\)"):
        model.loss(torch.randn(B, 3, 4, 4), y, step=0, total_steps=10, augment_labels=torch.zeros(B))


def test_registry_defaults_are_the_paper_values():
    c = UNET_CONFIGS["cifar10"]
    assert (c.augment_dim, c.model_channels, c.channel_mult) == (6, 128, (2, 2, 2))
    assert (c.channel_mult_emb, c.num_blocks) == (4, 4)
    assert (c.attn_resolutions, c.dropout, c.channel_mult_noise, c.resample_filter) == ((16,), 0.30, 2, (1, 3, 3, 1))
