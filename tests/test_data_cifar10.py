"""CIFAR-10 from fake batches written in the real cifar-10-batches-py pickle format."""

import pickle

import numpy as np
import pytest
import torch

from soflow_mini.cli import main
from soflow_mini.data.cifar10 import CIFAR10_FOLDER, load_cifar10, read_cifar_batch
from soflow_mini.train import build_config, build_data
from soflow_mini.train.data import ImageData

PER_BATCH = 4
TINY_DIT = ["--model.dit_size", "DiT-T/4", "--model.hidden_size", "32", "--model.depth", "1", "--model.num_heads", "2"]


def pixel(k, c, i, j):
    """The known value of image k, channel c, row i, column j in the fake files."""
    return (7 * k + 50 * c + 3 * i + j) % 256


def write_fake_cifar(root):
    """data_batch_1..5 and test_batch: dicts with data (n, 3072) uint8 in channel-major order
    (1024 red, 1024 green, 1024 blue values, rows top to bottom) and labels, as pickled by CIFAR."""
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    k, c, i, j = np.meshgrid(np.arange(6 * PER_BATCH), np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    data = pixel(k, c, i, j).astype(np.uint8).reshape(6 * PER_BATCH, 3072)
    names = [f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        rows = slice(b * PER_BATCH, (b + 1) * PER_BATCH)
        entry = {"batch_label": f"batch {b}", "labels": [v % 10 for v in range(rows.start, rows.stop)],
                 "data": data[rows], "filenames": [f"img{v}.png" for v in range(PER_BATCH)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)
    return folder


def test_reads_the_real_layout(tmp_path):
    write_fake_cifar(tmp_path)
    images, labels = load_cifar10(tmp_path)
    assert images.shape == (5 * PER_BATCH, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [v % 10 for v in range(5 * PER_BATCH)]
    for k, c, i, j in [(0, 0, 0, 0), (3, 1, 5, 17), (19, 2, 31, 30)]:
        assert images[k, i, j, c] == pixel(k, c, i, j)
    test_images, _ = load_cifar10(tmp_path, train=False)
    assert test_images.shape[0] == PER_BATCH and test_images[0, 0, 0, 0] == pixel(5 * PER_BATCH, 0, 0, 0)


def test_missing_data_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"in {tmp_path / CIFAR10_FOLDER}; set data.download true"):
        load_cifar10(tmp_path, download=False)


def test_corrupt_files_name_the_file(tmp_path):
    folder = write_fake_cifar(tmp_path)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])  # truncated
    with pytest.raises(ValueError, match=f"corrupt or truncated CIFAR-10 file {path}"):
        load_cifar10(tmp_path)
    with open(path, "wb") as fh:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match=f"corrupt CIFAR-10 file {path}: expected data"):
        read_cifar_batch(path)


def test_flips_follow_the_generator(tmp_path):
    write_fake_cifar(tmp_path)
    data = build_data(build_config("cifar10-dit", {"data.root": str(tmp_path)}).data)
    assert isinstance(data, ImageData) and data.spec.shape == (3, 32, 32) and data.spec.num_classes == 0
    index = torch.arange(8)
    x, y = data.batch(index, torch.Generator().manual_seed(0))
    flipped = torch.rand(8, generator=torch.Generator().manual_seed(0)) < 0.5
    plain = torch.from_numpy(load_cifar10(tmp_path)[0][:8]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert y is None and 0 < int(flipped.sum()) < 8
    for k in range(8):
        assert torch.equal(x[k], plain[k].flip(-1) if flipped[k] else plain[k])


def test_trains_and_samples_adm_layout(tmp_path):
    write_fake_cifar(tmp_path)
    run = tmp_path / "run"
    code = main(["train", "cifar10-cond", "--data.root", str(tmp_path), "--run-dir", str(run), *TINY_DIT,
                 "--train.batch_size", "8", "--train.steps", "2", "--train.log_every", "1", "--train.grid_samples", "4",
                 "--train.progress", "false", "--train.device", "cpu"])
    assert code == 0 and (run / "samples/step_00000002.png").is_file()
    out = tmp_path / "samples"
    assert main(["sample", str(run), "--out", str(out), "--num-samples", "5", "--batch-size", "2",
                 "--labels", "3,7", "--nfe", "2", "--no-progress"]) == 0
    with np.load(out / "samples.npz") as npz:
        assert npz["arr_0"].shape == (5, 32, 32, 3) and npz["arr_0"].dtype == np.uint8
        assert npz["arr_1"].tolist() == [3, 7, 3, 7, 3]
