"""DiT: zero output at initialisation, published sizes, shapes, embeddings."""

import math

import pytest
import torch

from soflow_mini import DIT_SIZES, DiT, build_dit
from soflow_mini.nets.dit import sincos_2d
from soflow_mini.nets.embeddings import sinusoidal_embedding


def _count(name):
    with torch.device("meta"):
        model = build_dit(name, input_size=32, in_channels=4, num_classes=1000)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,millions", [("DiT-B/2", 131), ("DiT-M/2", 308), ("DiT-L/2", 459), ("DiT-XL/2", 676)])
def test_published_parameter_counts(name, millions):
    assert round(_count(name) / 1e6) == millions


def test_registry_matches_published_widths():
    published = {"DiT-B/4": (4, 768, 12, 12), "DiT-B/2": (2, 768, 12, 12), "DiT-M/2": (2, 1024, 16, 16),
                 "DiT-L/2": (2, 1024, 24, 16), "DiT-XL/2": (2, 1152, 28, 16)}
    for name, sizes in published.items():
        s = DIT_SIZES[name]
        assert (s.patch_size, s.hidden_size, s.depth, s.num_heads) == sizes


@pytest.mark.parametrize("num_classes", [0, 10])
def test_fresh_dit_outputs_exact_zeros(num_classes):
    model = build_dit("DiT-T/2", input_size=(8, 12), in_channels=3, num_classes=num_classes)
    x = torch.randn(5, 3, 8, 12)
    y = torch.randint(0, num_classes + 1, (5,)) if num_classes else None
    out = model(x, torch.rand(5), torch.rand(5) * 0.3, y)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))


def test_trained_dit_depends_on_every_input():
    torch.manual_seed(0)
    model = DiT(input_size=8, in_channels=2, num_classes=3, patch_size=2, hidden_size=32, depth=2, num_heads=4)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t, s, y = torch.randn(2, 2, 8, 8), torch.tensor([0.7, 0.7]), torch.tensor([0.2, 0.2]), torch.tensor([1, 1])
    base = model(x, t, s, y)
    assert not torch.allclose(base, model(x, t + 0.1, s, y))
    assert not torch.allclose(base, model(x, t, s + 0.1, y))
    assert not torch.allclose(base, model(x, t, s, torch.tensor([2, 2])))
    assert not torch.allclose(base, model(x, t, s, None))  # None = the null class


def test_gap_embedder_sees_t_minus_s():
    torch.manual_seed(0)
    model = DiT(input_size=4, in_channels=1, patch_size=2, hidden_size=16, depth=1, num_heads=2)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    t, s = torch.tensor([0.8]), torch.tensor([0.3])
    c = model.t_embedder(t) + model.gap_embedder(t - s)
    h = model.x_embedder(x := torch.randn(1, 1, 4, 4)) + model.pos_embed
    for block in model.blocks:
        h = block(h, c)
    torch.testing.assert_close(model.unpatchify(model.final_layer(h, c)), model(x, t, s))


def test_sinusoidal_embedding_closed_form():
    t = torch.tensor([0.0, 0.25, 1.0])
    emb = sinusoidal_embedding(t, 8, max_period=10_000.0)
    freqs = [10_000 ** (-i / 4) for i in range(4)]
    expected = torch.tensor([[math.cos(v * f) for f in freqs] + [math.sin(v * f) for f in freqs] for v in t.tolist()])
    torch.testing.assert_close(emb, expected)


def test_sincos_2d_positions():
    pos = sincos_2d(8, 2, 3)  # (6, 8): first half encodes the column, second the row
    assert pos.shape == (6, 8)
    col, row = 2, 1  # token index row * 3 + col
    token = pos[row * 3 + col]
    omega = [1.0, 0.01]
    assert token[:4] == pytest.approx([math.sin(col * omega[0]), math.sin(col * omega[1]), math.cos(col * omega[0]), math.cos(col * omega[1])])
    assert token[4:] == pytest.approx([math.sin(row * omega[0]), math.sin(row * omega[1]), math.cos(row * omega[0]), math.cos(row * omega[1])])


def test_unpatchify_inverts_patch_layout():
    model = DiT(input_size=(4, 6), in_channels=3, patch_size=2, hidden_size=16, depth=1, num_heads=2)
    x = torch.randn(2, 3, 4, 6)
    p = 2
    tokens = x.reshape(2, 3, 2, p, 3, p).permute(0, 2, 4, 3, 5, 1).reshape(2, 6, p * p * 3)
    torch.testing.assert_close(model.unpatchify(tokens), x)


def test_dit_bad_inputs():
    model = build_dit("DiT-T/2", input_size=8, in_channels=1)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(2, 3, 8, 8), torch.rand(2), torch.rand(2))
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(2, 1, 8, 8), torch.rand(2), torch.rand(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unknown DiT size"):
        build_dit("DiT-Z/2")
    with pytest.raises(ValueError, match="divisible"):
        DiT(input_size=9, patch_size=2)
