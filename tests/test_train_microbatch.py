"""Micro-batches, the augmentation hook, RAdam, TF32 and the every-N-steps EMA of the trainer."""

import pytest
import torch
from torch import nn

from soflow_mini.train import TrainConfig, Trainer, build_config, load_checkpoint, train
from soflow_mini.train.data import PointData, derive_seed
from soflow_mini.train.trainer import shards_per_process, tf32_matmuls


class Recorder(nn.Module):
    """A deterministic stand-in model (loss mean((x0 w)^2)) that records every call."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -0.5]))
        self.calls = []

    def forward(self, x0, y=None, *, step, total_steps, generator, augment_labels=None):
        self.calls.append((step, x0.detach().clone(), augment_labels))
        loss = ((x0 * self.w) ** 2).mean()
        return loss, {"loss": loss.detach()}

    def sample(self, noise, y=None, nfe=1):
        return noise * self.w


def make_trainer(tmp_path, augment=None, **config):
    data = PointData("moons", 512, conditional=False, seed=0)
    config = TrainConfig(**{"steps": 3, "batch_size": 64, "log_every": 1, "checkpoint_every": 0, "progress": False,
                            "lr": 1e-2, **config})
    return Trainer(Recorder(), data, config, tmp_path, augment=augment)


@pytest.mark.parametrize("batch, world, accum, micro, expected", [
    (1024, 1, 1, 128, 8), (1024, 8, 1, 128, 1), (1024, 1, 1, 0, 1), (256, 1, 1, 100, 4), (96, 1, 1, 40, 3),
    (64, 1, 2, 64, 2), (64, 2, 1, 16, 2), (7, 1, 1, 2, 7),
])
def test_shards_per_process(batch, world, accum, micro, expected):
    assert shards_per_process(batch, world, accum, micro) == expected
    per_pass = batch // world // expected
    assert per_pass * world * expected == batch and (micro == 0 or per_pass <= micro)


def test_shards_per_process_errors():
    with pytest.raises(ValueError, match="must be divisible by the number of processes"):
        shards_per_process(10, 4)
    with pytest.raises(ValueError, match="exceeds"):
        shards_per_process(8, 1, 16, 4)


def test_micro_batches_give_the_whole_batch_gradient(tmp_path):
    """Passes of at most 16 samples: every pass within the cap, all samples of the batch seen
    once, and the weights equal those of one pass over the whole batch (float tolerance)."""
    whole = make_trainer(tmp_path / "whole")
    whole.fit()
    micro = make_trainer(tmp_path / "micro", micro_batch=16)
    assert micro.grad_accum == 4 and micro.shard_size == 16
    micro.fit()
    assert all(x.shape[0] == 16 for _, x, _ in micro.model.calls)
    for step in range(3):
        seen = torch.cat([x for s, x, _ in micro.model.calls if s == step])
        (full,) = [x for s, x, _ in whole.model.calls if s == step]
        assert torch.equal(seen, full)
    torch.testing.assert_close(micro.model.w, whole.model.w, rtol=1e-6, atol=1e-7)
    assert not torch.equal(whole.model.w.detach(), torch.tensor([1.0, -0.5]))  # it did train


def test_micro_batch_equals_the_same_grad_accum_bit_for_bit(tmp_path):
    small = {"model.mlp_width": 32, "model.mlp_depth": 2, "data.toy_size": 2048, "train.batch_size": 64,
             "train.steps": 3, "train.log_every": 1, "train.checkpoint_every": 0, "train.sample_every": 0,
             "train.progress": False, "train.device": "cpu"}
    a = train(build_config("toy-moons", {**small, "train.micro_batch": 20}), tmp_path / "micro")  # 4 passes of 16
    b = train(build_config("toy-moons", {**small, "train.grad_accum": 4}), tmp_path / "accum")
    state_a, state_b = load_checkpoint(a.checkpoint), load_checkpoint(b.checkpoint)
    for key, value in state_a["model"].items():
        assert torch.equal(value, state_b["model"][key]), key


def test_augmentation_hook_feeds_the_loss(tmp_path):
    """augment(x, generator=g) runs on each shard; the loss gets its images and labels, drawn
    from a generator of (seed, step, shard)."""
    def augment(x, *, generator):
        labels = torch.rand(x.shape[0], 6, generator=generator, device=x.device)
        return x + labels[:, :2], labels

    trainer = make_trainer(tmp_path, augment=augment, micro_batch=32, steps=2)
    trainer.fit()
    assert len(trainer.model.calls) == 4
    plain = make_trainer(tmp_path / "plain", micro_batch=32, steps=2)
    plain.fit()
    for call, (step, x, labels) in enumerate(trainer.model.calls):
        shard = call % 2
        g = torch.Generator().manual_seed(derive_seed(0, step, shard, 4))
        expected = torch.rand(32, 6, generator=g)
        assert torch.equal(labels, expected)
        assert plain.model.calls[call][2] is None
        torch.testing.assert_close(x, plain.model.calls[call][1] + expected[:, :2])


def test_radam_and_the_every_n_steps_ema(tmp_path):
    trainer = make_trainer(tmp_path, optimizer="radam", ema_decay=0.9, ema_every=2, ema_dtype="float64", steps=2)
    assert isinstance(trainer.optimizer, torch.optim.RAdam)
    assert trainer.ema.decay == pytest.approx(0.9 ** 2, rel=1e-15)
    start = trainer.model.w.detach().double().clone()
    trainer.fit()
    expected = 0.81 * start + 0.19 * trainer.model.w.detach().double()  # one update after step 2
    torch.testing.assert_close(trainer.ema.shadow["w"], expected, rtol=0, atol=1e-12)


def test_tf32_switch_is_scoped():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with tf32_matmuls(True):
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32
        with tf32_matmuls(False):
            assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_augmentation_needs_the_unet():
    from soflow_mini.train import build_model
    from soflow_mini.train.data import DataSpec

    config = build_config("cifar10-dit", {"data.augment_p": "0.12"})
    with pytest.raises(ValueError, match="data.augment_p 0.12 needs model.arch 'unet'"):
        build_model(config, DataSpec("image", (3, 32, 32)))
