"""Loading the authors' SoFlow checkpoints, written here in exactly their format.

Their training code saves torch.save({'model', 'ema_model', 'optimizer', 'finished_steps',
'finished_epochs'}); 'model' and 'ema_model' are state dicts of their whole Soflow module, so
every network key starts with 'network.'. DiT keys follow the original DiT code (s_embedder,
a stored pos_embed); U-Net keys are EDM's SongUNet names.
"""

import numpy as np
import pytest
import torch

from soflow_mini import DiT, SongUNet, build_unet, load_official, load_official_dit
from soflow_mini.cli import main
from soflow_mini.evaluation.samples import to_uint8
from soflow_mini.nets.convert import infer_unet_kwargs, official_state_dict
from soflow_mini.nets.unet import Conv2d
from soflow_mini.train.data import derive_seed


def _their_network_keys(net):
    """The network's state dict under the authors' names."""
    sd = {k.replace("gap_embedder.", "s_embedder."): v.clone() for k, v in net.state_dict().items()}
    if isinstance(net, DiT):
        sd["pos_embed"] = net.pos_embed.clone()  # stored by the original DiT code, (1, T, D)
    return sd


def _their_checkpoint(online, ema):
    """What their training code writes: state dicts of the Soflow module, which holds `network`."""
    params = [torch.nn.Parameter(torch.randn(3))]
    opt = torch.optim.RAdam(params, lr=1e-4)
    params[0].grad = torch.randn(3)
    opt.step()
    return {
        "model": {"network." + k: v for k, v in _their_network_keys(online).items()},
        "ema_model": {"network." + k: v for k, v in _their_network_keys(ema).items()},
        "optimizer": opt.state_dict(),
        "finished_steps": 1200,
        "finished_epochs": 3,
    }


def _randomise(net):
    """Visible outputs: the zero (DiT) or 1e-5 (U-Net) initialised layers get ordinary weights."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, Conv2d):
                torch.nn.init.xavier_uniform_(m.weight)
        for name, p in net.named_parameters():
            if "adaLN" in name or "final_layer" in name:
                p.normal_(std=0.02)
    return net


def _pair(make):
    torch.manual_seed(0)
    online, ema = _randomise(make()), _randomise(make())
    return online.eval(), ema.eval()


def _tiny_unet():
    return build_unet("tiny", img_resolution=8)


def _tiny_dit():
    return DiT(input_size=16, in_channels=4, num_classes=10, patch_size=2, hidden_size=64, depth=3, num_heads=4)


def test_unet_checkpoint_loads_ema_by_default(tmp_path):
    online, ema = _pair(_tiny_unet)
    path = tmp_path / "800000.pt"
    torch.save(_their_checkpoint(online, ema), path)
    loaded = load_official(path)
    assert isinstance(loaded, SongUNet) and not loaded.training
    assert (loaded.img_resolution, loaded.augment_dim, len(loaded.enc), len(loaded.dec)) == (8, 6, 4, 9)
    x, t = torch.randn(3, 3, 8, 8), torch.rand(3)
    aug = torch.randn(3, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x, t, 0.3 * t, augment_labels=aug), ema(x, t, 0.3 * t, augment_labels=aug))
        assert torch.equal(load_official(path, ema=False)(x, t, 0.3 * t), online(x, t, 0.3 * t))


def test_dit_checkpoint_loads_ema_by_default(tmp_path):
    online, ema = _pair(_tiny_dit)
    path = tmp_path / "400000.pt"
    torch.save(_their_checkpoint(online, ema), path)
    loaded = load_official(path, num_heads=4)
    assert isinstance(loaded, DiT)
    assert (loaded.input_size, loaded.in_channels, loaded.num_classes, len(loaded.blocks)) == ((16, 16), 4, 10, 3)
    x, t, y = torch.randn(3, 4, 16, 16), torch.rand(3), torch.tensor([0, 5, 10])
    with torch.no_grad():
        assert torch.equal(loaded(x, t, 0.5 * t, y), ema(x, t, 0.5 * t, y))
        assert torch.equal(load_official_dit(path, num_heads=4, prefer_ema=False)(x, t, 0.5 * t, y),
                           online(x, t, 0.5 * t, y))


def test_full_size_unet_keys_and_shapes():
    with torch.device("meta"):
        net = SongUNet.cifar10()
    sd = {"network." + k: v for k, v in net.state_dict().items()}
    ours = official_state_dict({"model": sd, "ema_model": sd}, ema=True)
    enc = ["32x32_conv"] + [f"32x32_block{i}" for i in range(4)]
    for res in (16, 8):
        enc += [f"{res}x{res}_down"] + [f"{res}x{res}_block{i}" for i in range(4)]
    dec = ["8x8_in0", "8x8_in1"] + [f"8x8_block{i}" for i in range(5)]
    for res in (16, 32):
        dec += [f"{res}x{res}_up"] + [f"{res}x{res}_block{i}" for i in range(5)]
    dec += ["32x32_aux_norm", "32x32_aux_conv"]
    assert list(net.enc) == enc and list(net.dec) == dec
    tops = {k.split(".")[0] if not k.startswith(("enc.", "dec.")) else ".".join(k.split(".")[:2]) for k in ours}
    assert tops == {"map_augment", "map_layer0", "map_layer1"} | {f"enc.{n}" for n in enc} | {f"dec.{n}" for n in dec}
    attention = sorted({k.split(".")[1] for k in ours if k.endswith("qkv.weight")})
    assert attention == sorted(["16x16_block0", "16x16_block1", "16x16_block2", "16x16_block3", "8x8_in0",
                                "16x16_block4"])
    shapes = {
        "map_augment.weight": (512, 6), "map_layer0.weight": (512, 512), "map_layer1.weight": (512, 512),
        "enc.32x32_block0.conv0.weight": (256, 128, 3, 3), "enc.32x32_block0.skip.weight": (256, 128, 1, 1),
        "enc.32x32_block0.affine.weight": (256, 512), "enc.16x16_down.conv0.resample_filter": (1, 1, 4, 4),
        "enc.16x16_block0.qkv.weight": (768, 256, 1, 1), "dec.8x8_block0.conv0.weight": (256, 512, 3, 3),
        "dec.32x32_block4.skip.weight": (256, 384, 1, 1),  # 256 + the 128 channels of enc.32x32_conv
        "dec.32x32_aux_norm.weight": (256,), "dec.32x32_aux_conv.weight": (3, 256, 3, 3),
    }
    for key, shape in shapes.items():
        assert tuple(ours[key].shape) == shape, key
    assert infer_unet_kwargs(ours) == dict(
        img_resolution=32, in_channels=3, out_channels=3, augment_dim=6, model_channels=128,
        channel_mult=(2, 2, 2), channel_mult_emb=4, num_blocks=4, attn_resolutions=(16,), channel_mult_noise=2,
        resample_filter=(1, 3, 3, 1),
    )


def test_sample_official_unet_equals_one_step_of_the_loaded_net(tmp_path):
    _, ema = _pair(_tiny_unet)
    torch.save(_their_checkpoint(ema, ema), tmp_path / "cifar.pt")
    out = tmp_path / "samples"
    assert main(["sample", "--official", str(tmp_path / "cifar.pt"), "--out", str(out), "--num-samples", "5",
                 "--batch-size", "3", "--nfe", "1", "--device", "cpu", "--no-progress"]) == 0
    expected = []
    for b, n in enumerate((3, 2)):  # the noise of batch b comes from (seed 0, b)
        x1 = torch.randn((n, 3, 8, 8), generator=torch.Generator().manual_seed(derive_seed(0, b)))
        with torch.no_grad():
            expected.append(to_uint8(x1 - ema(x1, torch.ones(n), torch.zeros(n))).numpy())  # f(x1, 1, 0)
    with np.load(out / "samples.npz") as npz:
        assert set(npz.files) == {"arr_0"}  # unconditional: no labels
        assert npz["arr_0"].dtype == np.uint8 and npz["arr_0"].shape == (5, 8, 8, 3)
        assert np.array_equal(npz["arr_0"], np.concatenate(expected))
        assert npz["arr_0"].std() > 0


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_official(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="not an authors' SoFlow checkpoint"):
        load_official({"optimizer": {}})
    online, ema = _pair(_tiny_unet)
    ckpt = _their_checkpoint(online, ema)
    with pytest.raises(ValueError, match="not an authors' SoFlow checkpoint"):  # keys without network.
        load_official({k[len("network."):]: v for k, v in ckpt["ema_model"].items()})
    with pytest.raises(ValueError, match="no 'ema_model' entry"):
        load_official({"model": ckpt["model"]})
    with pytest.raises(ValueError, match="unknown network"):
        load_official({"model": {"network.head.weight": torch.zeros(2)}}, ema=False)
    broken = dict(ckpt["ema_model"])
    del broken["network.dec.4x4_in1.affine.bias"]
    with pytest.raises(ValueError, match="U-Net does not match: missing"):
        load_official({"ema_model": broken})
    with pytest.raises(ValueError, match="holds a U-Net, not a DiT"):
        load_official_dit(ckpt)

    dit = DiT(input_size=8, in_channels=4, patch_size=2, hidden_size=32, depth=1, num_heads=2)
    sd = {"network." + k: v for k, v in _their_network_keys(dit).items()}
    with pytest.raises(ValueError, match="pass num_heads"):
        load_official({"ema_model": sd})
    sd["network.final_layer.linear.weight"] = torch.zeros(2 * 2 * 8, 32)  # a learned-sigma head
    sd["network.final_layer.linear.bias"] = torch.zeros(2 * 2 * 8)
    with pytest.raises(ValueError, match="no learned sigma"):
        load_official({"ema_model": sd}, num_heads=2)
