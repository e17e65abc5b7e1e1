"""ImageNet-style latents: ADM crop, SD-VAE posterior caching (shards, resume), the latent
data set, and training/sampling on it, with a tiny random AutoencoderKL and generated images."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

from soflow_mini.cli import main
from soflow_mini.data.latents import (
    LATENT_SCALE, LatentDataset, center_crop_arr, encode_posterior, list_images, load_vae, prepare_latents,
)

SIZE = 32  # image side; the 2-level VAE halves it once: latents (4, 16, 16)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4)
    path = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """Two classes, five images of assorted sizes and formats."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    sizes = {"n01_cat": [(48, 40), (80, 36)], "n02_dog": [(40, 40), (100, 70), (33, 57)]}
    for cls, shapes in sizes.items():
        (root / cls).mkdir()
        for k, (w, h) in enumerate(shapes):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"img{k}.{'png' if k % 2 else 'jpg'}")
    (root / "n02_dog" / "notes.txt").write_text("not an image")
    return root


def test_adm_center_crop_known_answers():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 80, 3), dtype=np.uint8))
    expected = np.asarray(image.resize((64, 32), Image.BICUBIC))[:, 16:48]  # short side to 32, center crop
    assert np.array_equal(center_crop_arr(image, 32), expected)
    big = Image.fromarray(np.random.default_rng(2).integers(0, 256, (70, 100, 3), dtype=np.uint8))
    halved = big.resize((50, 35), Image.BOX)  # 70 >= 2 * 32: box-halve first
    expected = np.asarray(halved.resize((46, 32), Image.BICUBIC))[:, 7:39]
    assert np.array_equal(center_crop_arr(big, 32), expected)


def test_prepare_in_shards_resume_and_read(tmp_path, image_dir, vae_dir):
    out = tmp_path / "latents"
    for shard in (0, 1):
        assert main(["prepare-latents", str(image_dir), str(out), "--vae", str(vae_dir), "--image-size", str(SIZE),
                     "--batch-size", "2", "--device", "cpu", "--shard", str(shard), "--num-shards", "2",
                     "--dtype", "float32", "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_images"] == 5 and manifest["classes"] == ["n01_cat", "n02_dog"]
    assert manifest["latent_shape"] == [4, 16, 16] and manifest["latent_scale"] == LATENT_SCALE
    assert [(p["start"], p["stop"]) for p in manifest["parts"]] == [(0, 2), (2, 5)]

    # stored posterior = encoding of the ADM crop, and of its mirror image
    vae = load_vae(vae_dir)
    paths, labels, _ = list_images(image_dir)
    crop = center_crop_arr(Image.open(paths[3]).convert("RGB"), SIZE)
    part = np.load(out / manifest["parts"][1]["file"])
    expected = encode_posterior(vae, crop[None]).numpy()[0]  # (2, 2, 4, 16, 16)
    np.testing.assert_allclose(part[1], expected, rtol=1e-5, atol=1e-5)
    mirrored = encode_posterior(vae, crop[None, :, ::-1].copy()).numpy()[0]
    np.testing.assert_allclose(part[1, 1], mirrored[0], rtol=1e-4, atol=1e-5)

    # resume: forget two rows of shard 1, rerun, get them back
    done_path = out / manifest["parts"][1]["done"]
    done = np.load(done_path, mmap_mode="r+")
    done[[0, 2]] = False
    done.flush()
    rows = np.load(out / manifest["parts"][1]["file"], mmap_mode="r+")
    rows[[0, 2]] = 0
    rows.flush()
    del done, rows
    prepare_latents(image_dir, out, vae=vae_dir, image_size=SIZE, shard=1, num_shards=2, dtype="float32",
                    progress=False)
    np.testing.assert_array_equal(np.load(out / manifest["parts"][1]["file"]), part)

    # the data set: mean + std * noise of a random flip, times 0.18215
    data = LatentDataset(out)
    assert len(data) == 5 and data.num_classes == 2
    index = torch.tensor([4, 0, 3])
    x, y = data.batch(index, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    flip = torch.randint(0, 2, (3,), generator=g)
    noise = torch.randn((3, 4, 16, 16), generator=g)
    stats = np.concatenate([np.load(out / p["file"]) for p in manifest["parts"]])
    for k, i in enumerate(index.tolist()):
        mean, std = torch.from_numpy(stats[i, int(flip[k])])
        torch.testing.assert_close(x[k], LATENT_SCALE * (mean + std * noise[k]))
    assert y.tolist() == labels[[4, 0, 3]].tolist()


def test_incomplete_and_corrupt_parts_fail_clearly(tmp_path, image_dir, vae_dir):
    out = tmp_path / "latents"
    prepare_latents(image_dir, out, vae=vae_dir, image_size=SIZE, shard=0, num_shards=2, progress=False)
    with pytest.raises(FileNotFoundError, match=r"00002\.npy is missing: run soflow-prepare-latents --shard 1"):
        LatentDataset(out)
    prepare_latents(image_dir, out, vae=vae_dir, image_size=SIZE, shard=1, num_shards=2, progress=False)
    assert len(LatentDataset(out)) == 5
    part = out / "part-00001-of-00002.npy"
    part.write_bytes(part.read_bytes()[:2000])
    with pytest.raises(ValueError, match=f"corrupt or truncated latent file {part}"):
        LatentDataset(out)
    with pytest.raises(ValueError, match="written with other settings"):
        prepare_latents(image_dir, out, vae=vae_dir, image_size=16, shard=0, num_shards=2, progress=False)


def test_train_and_sample_on_latents(tmp_path, image_dir, vae_dir):
    out = tmp_path / "latents"
    prepare_latents(image_dir, out, vae=vae_dir, image_size=SIZE, progress=False)
    run = tmp_path / "run"
    assert main(["train", "imagenet256-b4", "--data.root", str(out), "--run-dir", str(run),
                 "--model.dit_size", "DiT-T/4", "--model.hidden_size", "32", "--model.depth", "1",
                 "--model.num_heads", "2", "--train.batch_size", "4", "--train.steps", "2", "--train.log_every", "1",
                 "--train.grid_samples", "4", "--train.progress", "false", "--train.device", "cpu"]) == 0
    grid = np.asarray(Image.open(run / "samples/step_00000002.png"))
    assert grid.shape[2] == 3 and grid.shape[0] > 2 * SIZE  # decoded 32x32 images, enlarged
    samples = tmp_path / "samples"
    assert main(["sample", str(run), "--out", str(samples), "--num-samples", "3", "--no-progress"]) == 0
    with np.load(samples / "samples.npz") as npz:
        assert npz["arr_0"].shape == (3, SIZE, SIZE, 3) and npz["arr_0"].dtype == np.uint8
        assert set(npz["arr_1"].tolist()) <= {0, 1}


def test_sample_from_a_released_checkpoint(tmp_path, vae_dir):
    """A file in the authors' format (their Soflow module's state dicts, keys network.*, the DiT
    with s_embedder and a stored pos_embed): samples are f(x1, 1, 0) = x1 - F(x1, 1, 0) of the
    EMA network, decoded by the VAE."""
    from soflow_mini.nets import build_dit
    from soflow_mini.train.data import derive_seed

    torch.manual_seed(1)
    net = build_dit("DiT-T/4", input_size=16, in_channels=4, num_classes=2).eval()
    for p in net.final_layer.parameters():  # a fresh DiT outputs 0; give it an output
        torch.nn.init.normal_(p, std=0.02)
    weights = {k.replace("gap_embedder.", "s_embedder."): v for k, v in net.state_dict().items()}
    weights["pos_embed"] = net.pos_embed.clone()
    ema = {"network." + k: v for k, v in weights.items()}
    online = {k: torch.zeros_like(v) for k, v in ema.items()}
    torch.save({"model": online, "ema_model": ema, "optimizer": {"state": {}, "param_groups": []},
                "finished_steps": 400000, "finished_epochs": 80}, tmp_path / "released.pth")
    out = tmp_path / "samples"
    assert main(["sample", "--official", str(tmp_path / "released.pth"), "--vae", str(vae_dir), "--out", str(out),
                 "--num-samples", "3", "--nfe", "1", "--labels", "1", "--device", "cpu", "--no-progress"]) == 0
    x1 = torch.randn((3, 4, 16, 16), generator=torch.Generator().manual_seed(derive_seed(0, 0)))
    y = torch.ones(3, dtype=torch.long)
    with torch.no_grad():
        x0 = x1 - net(x1, torch.ones(3), torch.zeros(3), y)
        images = ((load_vae(vae_dir).decode(x0 / LATENT_SCALE).sample + 1) * 127.5).round().clamp(0, 255)
    with np.load(out / "samples.npz") as npz:
        assert npz["arr_0"].shape == (3, SIZE, SIZE, 3) and npz["arr_1"].tolist() == [1, 1, 1]
        assert np.array_equal(npz["arr_0"], images.to(torch.uint8).permute(0, 2, 3, 1).numpy())
        assert npz["arr_0"].std() > 0
