"""FID / IS plumbing with a small injected feature extractor (no network, no downloads),
sample files in the ADM layout, and sampling split over processes."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from soflow_mini.cli import evaluate_main, main
from soflow_mini.evaluation import (
    evaluate_images, frechet_distance, generate, inception_features, inception_score, load_reference, resolve_labels,
    save_reference, statistics, to_uint8, write_samples,
)
from soflow_mini.evaluation.fid import compute_features
from soflow_mini.train.data import DataSpec
from soflow_mini.train.distributed import DistInfo

K = 4  # classes of the fake classifier


def block_features(images):
    """Features: 8x8 block means of uint8 (B, 3, 32, 32) -> (B, 48); logits: one-hot of the
    image's brightest channel (a confident classifier over K = 4 classes)."""
    x = images.float()
    pool = F.avg_pool2d(x, 8).flatten(1)  # (B, 48)
    logits = 50.0 * F.one_hot(x.mean((2, 3)).argmax(1), K).float()  # (B, K)
    return pool, logits


def fake_images(n=64, seed=0):
    """uint8 (n, 32, 32, 3) in [20, 200], image k brightest in channel k % 3."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(20, 180, (n, 32, 32, 3), generator=g)
    x[torch.arange(n), :, :, torch.arange(n) % 3] += 20
    return x.to(torch.uint8).numpy()


def test_fid_known_answers():
    images = fake_images()
    reference = statistics(compute_features(images, block_features, progress=False)[0])
    same = evaluate_images(images, reference, block_features, isc_splits=1, progress=False)
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    shifted = evaluate_images(images + np.uint8(10), reference, block_features, progress=False)
    assert shifted["fid"] == pytest.approx(48 * 10.0**2, rel=1e-6)  # |shift|^2 over 48 features, same covariance
    # three equally likely, confidently predicted classes: IS = 3
    assert same["inception_score"] == pytest.approx(3.0, rel=1e-3) and same["num_samples"] == 64


def test_inception_score_and_frechet_closed_forms():
    logits = 50.0 * F.one_hot(torch.arange(40) % 4, 4).double()
    assert inception_score(logits, splits=1)[0] == pytest.approx(4.0, rel=1e-6)
    assert inception_score(torch.zeros(40, 4), splits=2) == pytest.approx((1.0, 0.0))
    a = {"mu": np.zeros(3), "sigma": np.diag([1.0, 4.0, 9.0])}
    b = {"mu": np.array([1.0, 0, 0]), "sigma": np.diag([4.0, 4.0, 1.0])}
    # |mu|^2 + sum (sqrt(s_a) - sqrt(s_b))^2 for diagonal covariances
    assert frechet_distance(a, b) == pytest.approx(1 + 1 + 0 + 4)


def test_evaluate_command_with_reference_files(tmp_path, capsys):
    images = fake_images()
    samples, ref_images, ref_stats = tmp_path / "samples.npz", tmp_path / "ref_images.npz", tmp_path / "ref_stats.npz"
    np.savez(samples, arr_0=images + np.uint8(10))
    np.savez(ref_images, arr_0=images)
    common = ["--no-progress", "--isc-splits", "1"]
    assert evaluate_main([str(samples), "--reference", str(ref_images), "--save-reference", str(ref_stats), *common],
                         feature_fn=block_features) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["fid"] == pytest.approx(4800, rel=1e-6)
    assert set(np.load(ref_stats).files) == {"mu", "sigma"}
    assert evaluate_main([str(samples), "--reference", str(ref_stats), *common], feature_fn=block_features) == 0
    assert json.loads(capsys.readouterr().out)["fid"] == pytest.approx(first["fid"], rel=1e-9)


def test_evaluate_command_errors(tmp_path, capsys):
    path = tmp_path / "samples.npz"
    np.savez(path, arr_0=fake_images(4))
    path.write_bytes(path.read_bytes()[:300])  # truncated
    assert main(["evaluate", str(path), "--reference", "x.npz"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"corrupt or truncated samples file {path}" in err
    np.savez(path, arr_0=fake_images(4))
    assert main(["evaluate", str(path)]) == 1
    assert "--reference is required" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="reference file not found"):
        load_reference(tmp_path / "missing.npz")


def test_inception_from_a_local_weights_file(tmp_path, monkeypatch):
    """The TF-compatible Inception loads a local weights file and never downloads."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(fe, "load_state_dict_from_url", no_download)
    with pytest.raises(FileNotFoundError, match="Inception weights not found"):
        inception_features(tmp_path / "missing.pth")
    monkeypatch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    monkeypatch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
    weights = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()  # random weights
    monkeypatch.undo()
    monkeypatch.setattr(fe, "load_state_dict_from_url", no_download)
    torch.save(weights, tmp_path / "inception.pth")
    pool, logits = inception_features(tmp_path / "inception.pth")(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)


class Stand_in(nn.Module):
    """sample(): a deterministic function of noise and labels, drawing one extra normal."""

    def sample(self, noise, y=None, nfe=1):
        extra = torch.randn(noise.shape, device=noise.device)
        return torch.tanh(noise + 0.1 * extra + y.view(-1, 1, 1, 1))


def test_sampling_split_over_processes_equals_one_process(tmp_path):
    spec = DataSpec("image", (3, 8, 8), num_classes=3)
    kw = dict(num_samples=11, batch_size=3, labels="random", seed=4, progress=False)
    samples, labels = generate(Stand_in(), spec, **kw)
    assert samples.shape == (11, 8, 8, 3) and samples.dtype == np.uint8
    torch.testing.assert_close(torch.from_numpy(labels), resolve_labels("random", 11, 3, seed=4))
    parts = [generate(Stand_in(), spec, dist_info=DistInfo(r, 2), **kw) for r in (0, 1)]
    for rank in (1, 0):  # process 1 writes its part, process 0 merges
        write_samples(tmp_path, *parts[rank], spec, batch_size=3, num_samples=11, dist_info=DistInfo(rank, 2))
    with np.load(tmp_path / "samples.npz") as npz:
        assert np.array_equal(npz["arr_0"], samples) and np.array_equal(npz["arr_1"], labels)
    assert (tmp_path / "grid.png").is_file() and not (tmp_path / ".parts").exists()


def test_labels_and_uint8():
    assert resolve_labels([2, 0], 5, 3).tolist() == [2, 0, 2, 0, 2]
    assert resolve_labels(None, 5, 0) is None
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\]"):
        resolve_labels([3], 5, 3)
    with pytest.raises(ValueError, match="unconditional"):
        resolve_labels([1], 5, 0)
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0]).view(1, 1, 1, 5)
    assert to_uint8(x).flatten().tolist() == [0, 64, 128, 255, 255]


def test_save_and_load_reference(tmp_path):
    stats = {"mu": np.arange(3.0), "sigma": np.eye(3)}
    loaded = load_reference(save_reference(tmp_path / "ref.npz", stats))
    assert np.array_equal(loaded["mu"], stats["mu"]) and np.array_equal(loaded["sigma"], stats["sigma"])
