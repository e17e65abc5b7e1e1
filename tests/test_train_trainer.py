"""The generic trainer: exact resume, Ctrl-C, non-finite losses, grids, baselines."""

import os
import signal

import pytest
import torch
from torch import nn

from soflow_mini.train import (
    NonFiniteLoss, Trainer, TrainConfig, build_config, list_checkpoints, load_checkpoint, load_model, read_log,
    train,
)
from soflow_mini.train.data import PointData


SMALL = {
    "model.mlp_width": 64, "model.mlp_depth": 2, "data.toy_size": 4096, "train.batch_size": 64,
    "train.steps": 6, "train.log_every": 1, "train.checkpoint_every": 3, "train.grid_samples": 256,
    "train.progress": False, "train.device": "cpu",
}


def toy_config(**overrides):
    return build_config("toy-moons", {**SMALL, **{k.replace("__", "."): v for k, v in overrides.items()}})


def assert_same_state(a, b):
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][key], b["ema"]["shadow"][key]), key
    for i, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][i]["exp_avg_sq"])


def test_resume_is_exact(tmp_path):
    """Interrupted after step 5 with the last checkpoint at step 3, then resumed: the same
    loss sequence and the same final weights as an uninterrupted run."""
    config = toy_config()
    full = train(config, tmp_path / "full")
    assert full.status == "finished" and full.step == 6

    part = train(config, tmp_path / "part", stop_at=5)
    assert part.status == "interrupted" and [s for s, _ in list_checkpoints(tmp_path / "part")] == [3, 5]
    (tmp_path / "part/checkpoints/step_00000005.pt").unlink()  # as if killed after step 5
    assert len(read_log(tmp_path / "part/log.csv")) == 5
    rest = train(config, tmp_path / "part")
    assert rest.status == "finished"

    losses = lambda run: [(row["step"], row["loss"], row["scm_mse"]) for row in read_log(tmp_path / run / "log.csv")]  # noqa: E731
    assert losses("part") == losses("full")
    assert [r[0] for r in losses("full")] == [1, 2, 3, 4, 5, 6]
    assert_same_state(load_checkpoint(full.checkpoint), load_checkpoint(rest.checkpoint))
    assert (tmp_path / "full/samples/step_00000006.png").is_file()  # the final grid

    mtime = rest.checkpoint.stat().st_mtime_ns  # a finished run started again does nothing
    again = train(config, tmp_path / "part")
    assert again.status == "finished" and again.checkpoint.stat().st_mtime_ns == mtime


def test_run_folder_contents_and_reload(tmp_path):
    config = toy_config(train__log_format="jsonl", train__sample_every=3)
    result = train(config, tmp_path)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    rows = read_log(tmp_path / "log.jsonl")
    assert {"loss", "fm_mse", "scm_mse", "steps_per_s", "lr"} <= set(rows[0])
    state = load_checkpoint(result.checkpoint)
    assert state["config"] == config.to_dict() and state["data_spec"]["toy"] == "moons"
    model, spec, loaded, step = load_model(tmp_path)
    assert step == 6 and loaded == config and spec.shape == (2,)
    # EMA weights by default, online weights on request
    online, *_ = load_model(tmp_path, ema=False)
    key = "net.inp.weight"
    assert torch.equal(online.state_dict()[key], state["model"][key])
    assert torch.equal(model.state_dict()[key], state["ema"]["shadow"][key].float())


class Scripted(nn.Module):
    """A stand-in model: quadratic loss; ``hook(step)`` runs inside the step."""

    def __init__(self, hook=None):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))
        self.hook = hook or (lambda step: 1.0)

    def forward(self, x0, y=None, *, step, total_steps, generator):
        loss = ((x0 * self.w) ** 2).mean() * self.hook(step)
        return loss, {"loss": loss.detach()}

    def sample(self, noise, y=None, nfe=1):
        return noise * self.w


def scripted_trainer(tmp_path, hook, **config):
    data = PointData("moons", 512, conditional=False, seed=0)
    config = TrainConfig(**{"steps": 10, "batch_size": 8, "log_every": 5, "checkpoint_every": 2, "progress": False,
                            **config})
    return Trainer(Scripted(hook), data, config, tmp_path)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = scripted_trainer(tmp_path, lambda step: float("nan") if step >= 3 else 1.0)
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at step 4: .*step_00000002\.pt"):
        trainer.fit()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]
    assert torch.isfinite(load_checkpoint(tmp_path / "checkpoints/step_00000002.pt")["model"]["w"]).all()


def test_sigint_checkpoints_and_resumes(tmp_path):
    def hook(step):
        if step == 2:  # Ctrl-C arrives while step 3 runs
            os.kill(os.getpid(), signal.SIGINT)
        return 1.0

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the tests run as a background job
    result = scripted_trainer(tmp_path, hook).fit()
    assert (result.status, result.step) == ("interrupted", 3)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    resumed = scripted_trainer(tmp_path, lambda step: 1.0)
    assert resumed.step == 3
    assert resumed.fit().status == "finished"


def test_batch_must_split_evenly(tmp_path):
    with pytest.raises(ValueError, match="train.batch_size"):
        scripted_trainer(tmp_path, None, batch_size=9, grad_accum=2)


@pytest.mark.parametrize("method", ["flow_matching", "meanflow"])
def test_baselines_train_with_the_same_trainer(tmp_path, method):
    result = train(toy_config(train__method=method, train__steps=2, train__checkpoint_every=0), tmp_path)
    assert result.status == "finished"
    assert (tmp_path / "samples/step_00000002.png").is_file()


def test_grad_clip_and_float64_ema(tmp_path):
    config = toy_config(train__grad_clip=1e-3, train__ema_dtype="float64", train__ema_every=2, train__steps=4)
    train(config, tmp_path)
    rows = read_log(tmp_path / "log.csv")
    assert all(row["grad_norm"] > 0 for row in rows)
    state = load_checkpoint(tmp_path / "checkpoints/step_00000004.pt")
    assert state["ema"]["num_updates"] == 2
    assert all(v.dtype == torch.float64 for v in state["ema"]["shadow"].values())
