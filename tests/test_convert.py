"""Loading state dicts in the layout of the authors' released SoFlow DiT checkpoints."""

import pytest
import torch

from soflow_mini import DiT, load_official_dit
from soflow_mini.nets.convert import convert_official_state_dict
from soflow_mini.nets.dit import sincos_2d


def _official_layout(model: DiT, prefix="") -> dict:
    """A state dict as the original DiT code names it: s_embedder for the gap embedder and a
    stored pos_embed parameter."""
    sd = {}
    for key, value in model.state_dict().items():
        key = key.replace("gap_embedder.", "s_embedder.")
        sd[prefix + key] = torch.randn_like(value)
    grid = model.grid
    sd[prefix + "pos_embed"] = torch.from_numpy(sincos_2d(model.pos_embed.shape[-1], *grid)).float()[None]
    return sd


def test_official_keys_cover_the_model_exactly():
    model = DiT(input_size=16, in_channels=4, num_classes=10, patch_size=2, hidden_size=64, depth=3, num_heads=4)
    converted = convert_official_state_dict(_official_layout(model))
    assert set(converted) == set(model.state_dict())
    for name in ("x_embedder.proj.weight", "t_embedder.mlp.0.weight", "y_embedder.embedding_table.weight",
                 "blocks.2.attn.qkv.weight", "blocks.0.mlp.fc2.bias", "blocks.1.adaLN_modulation.1.weight",
                 "final_layer.linear.weight", "final_layer.adaLN_modulation.1.bias"):
        assert name in converted


def test_load_official_checkpoint_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    ref = DiT(input_size=16, in_channels=4, num_classes=10, patch_size=2, hidden_size=64, depth=3, num_heads=4)
    sd = _official_layout(ref, prefix="module.")
    ema = {k: v + 1.0 for k, v in sd.items()}  # the EMA copy differs from the online one
    path = tmp_path / "0001200000.pt"
    torch.save({"model": sd, "ema": ema, "opt": {}, "steps": 1200000}, path)

    loaded = load_official_dit(path, num_heads=4)
    assert (loaded.input_size, loaded.in_channels, loaded.num_classes, len(loaded.blocks)) == ((16, 16), 4, 10, 3)
    ref.load_state_dict(convert_official_state_dict(ema))
    x, t, s, y = torch.randn(3, 4, 16, 16), torch.rand(3), torch.rand(3) * 0.1, torch.tensor([0, 5, 10])
    torch.testing.assert_close(loaded(x, t, s, y), ref(x, t, s, y))

    online = load_official_dit(path, num_heads=4, prefer_ema=False)
    ref.load_state_dict(convert_official_state_dict(sd))
    torch.testing.assert_close(online(x, t, s, y), ref(x, t, s, y))


def test_heads_come_from_the_registry_for_published_sizes():
    with torch.device("meta"):
        ref = DiT(input_size=32, in_channels=4, num_classes=1000, patch_size=4, hidden_size=768, depth=12, num_heads=12)
    sd = {k.replace("gap_embedder.", "s_embedder."): torch.zeros(v.shape) for k, v in ref.state_dict().items()}
    sd["pos_embed"] = torch.zeros(1, 64, 768)
    model = load_official_dit(sd)  # DiT-B/4 on 32x32 latents
    assert model.blocks[0].attn.num_heads == 12 and model.input_size == (32, 32)


def test_clear_errors():
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_official_dit("does-not-exist.pt")
    with pytest.raises(ValueError, match="no DiT weights"):
        load_official_dit({"optimizer": {}})
    model = DiT(input_size=8, in_channels=4, patch_size=2, hidden_size=32, depth=1, num_heads=2)
    sd = _official_layout(model)
    sd["final_layer.linear.weight"] = torch.zeros(2 * 2 * 8, 32)  # learned-sigma head
    sd["final_layer.linear.bias"] = torch.zeros(2 * 2 * 8)
    with pytest.raises(ValueError, match="no learned sigma"):
        load_official_dit(sd, num_heads=2)
    with pytest.raises(ValueError, match="pass num_heads"):
        load_official_dit(_official_layout(model))
