"""The CIFAR-10 geometric augmentation: identity at p = 0, flips, known geometric transforms on
images that are affine functions of position, and labels that record what was drawn."""

import math

import pytest
import torch

from soflow_mini.data import AugmentDraw, GeometricAugment, augment

H = W = 8


def _draw(B, **values):
    z = torch.zeros(B)
    fields = dict(flip=z, scale=z, aniso=z, aniso_angle=z, tx=z, ty=z)
    fields.update({k: torch.as_tensor(v, dtype=torch.float32) for k, v in values.items()})
    return AugmentDraw(**fields)


def _ramp(B):
    """Images whose channels are affine in the centred pixel coordinates (x right, y down)."""
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64) - (H - 1) / 2,
                            torch.arange(W, dtype=torch.float64) - (W - 1) / 2, indexing="ij")
    return lambda fx, fy: torch.stack([0.1 * fx(xx, yy) + 0.05 * fy(xx, yy), -0.08 * fx(xx, yy) + 0.2,
                                       0.03 * fy(xx, yy)])[None].repeat(B, 1, 1, 1)


def test_identity_at_p_zero():
    x = torch.rand(16, 3, H, W) * 2 - 1
    out, labels = augment(x, p=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, x) and torch.equal(labels, torch.zeros(16, 6))


def test_pure_flip_equals_torch_flip():
    pipe = GeometricAugment(p=1.0, xflip=1.0, scale=0.0, aniso=0.0, translate=0.0)
    x = torch.randn(32, 3, H, W)
    out, labels = pipe(x, generator=torch.Generator().manual_seed(1))
    flipped = labels[:, 0] == 1
    assert 0 < flipped.sum() < 32 and torch.equal(labels[:, 1:], torch.zeros(32, 5))
    assert torch.equal(out[flipped], torch.flip(x[flipped], dims=[3]))
    assert torch.equal(out[~flipped], x[~flipped])


def test_integer_translation_moves_pixels_and_reflects_at_the_edge():
    pipe = GeometricAugment()
    x = torch.randn(2, 3, H, W)
    unit = 1 / (pipe.translate_std * W)  # the label of a one-pixel shift
    out = pipe.apply(x, _draw(2, tx=[unit, 0.0], ty=[0.0, -2 * unit]))
    torch.testing.assert_close(out[0, :, :, 1:], x[0, :, :, :-1], atol=1e-5, rtol=0)  # content moves right
    torch.testing.assert_close(out[0, :, :, 0], x[0, :, :, 1], atol=1e-5, rtol=0)  # reflected about column 0
    torch.testing.assert_close(out[1, :, :-2], x[1, :, 2:], atol=1e-5, rtol=0)  # ty < 0: content moves up


def test_scale_and_anisotropic_scale_on_affine_images():
    ramp = _ramp(3)
    pipe = GeometricAugment()
    x = ramp(lambda x, y: x, lambda x, y: y)
    a = 2 ** 0.5  # aniso z = 2.5 -> 2^(0.2 * 2.5)
    draw = _draw(3, scale=[5.0, 0, 0], aniso=[0, 2.5, 2.5], aniso_angle=[0, 0, math.pi / 2])
    out = pipe.apply(x, draw)
    # Output at position c shows the input at G^-1 c: zoom by 2 about the centre ...
    torch.testing.assert_close(out[0], ramp(lambda x, y: x / 2, lambda x, y: y / 2)[0])
    # ... stretch x by a and squeeze y by 1/a (r = 0), and the reverse in the frame turned by pi/2.
    inner = (slice(None), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(out[1][inner], ramp(lambda x, y: x / a, lambda x, y: y * a)[1][inner])
    torch.testing.assert_close(out[2][inner], ramp(lambda x, y: x * a, lambda x, y: y / a)[2][inner])
    labels = draw.labels()
    torch.testing.assert_close(labels[:, 1], torch.tensor([5.0, 0, 0]))
    torch.testing.assert_close(labels[:, 2:4], torch.tensor([[0.0, 0], [2.5, 0], [0, 2.5]]), atol=1e-6, rtol=0)


def test_labels_record_the_draw_and_rates_follow_p():
    pipe = GeometricAugment()  # p = 0.12
    x = torch.randn(64, 3, H, W)
    out, labels = pipe(x, generator=torch.Generator().manual_seed(3))
    draw = pipe.draw(64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(labels, draw.labels())
    assert torch.equal(out, pipe.apply(x, draw))
    untouched = (labels[:, 1:] == 0).all(1)
    assert torch.equal(out[untouched & (labels[:, 0] == 0)], x[untouched & (labels[:, 0] == 0)])

    n = 40_000
    big = pipe.draw(n, generator=torch.Generator().manual_seed(4))
    tol = 4 * math.sqrt(0.12 * 0.88 / n)
    assert abs(big.flip.mean() - 0.5) < 4 * math.sqrt(0.25 / n)  # the flip decision is always drawn
    for z in (big.scale, big.aniso, big.tx):
        assert abs((z != 0).float().mean() - 0.12) < tol
    assert torch.equal(big.tx != 0, big.ty != 0)  # one decision for both shifts
    rotated = (big.aniso_angle != 0).float().sum() / (big.aniso != 0).float().sum()
    assert abs(rotated - 0.5) < 0.05
    assert torch.equal(big.aniso_angle[big.aniso == 0], torch.zeros(int((big.aniso == 0).sum())))


def test_clear_errors():
    with pytest.raises(ValueError, match="p must be >= 0"):
        GeometricAugment(p=-0.1)
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\)"):
        GeometricAugment()(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="B = 2"):
        GeometricAugment().apply(torch.zeros(3, 3, 8, 8), _draw(2))
