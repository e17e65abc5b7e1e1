"""torchrun with two CPU processes (gloo) against one process with the same global batch."""

import os
import subprocess
import sys

import pytest
import torch

from soflow_mini.train import build_config, load_checkpoint, read_log, train

OVERRIDES = {
    "model.mlp_width": "64", "model.mlp_depth": "2", "data.toy_size": "4096", "train.batch_size": "64",
    "train.steps": "4", "train.log_every": "1", "train.checkpoint_every": "0", "train.grid_samples": "64",
    "train.progress": "false", "train.device": "cpu",
}


def test_two_processes_match_one_process(tmp_path):
    args = [f"--{k}={v}" for k, v in OVERRIDES.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "soflow_mini.cli", "train", "toy-moons", "--run-dir", str(tmp_path / "ddp"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]

    # One process cutting the same global batch of 64 into the same two shards of 32.
    single = train(build_config("toy-moons", {**OVERRIDES, "train.grad_accum": "2"}), tmp_path / "one")
    ddp_rows, one_rows = read_log(tmp_path / "ddp/log.csv"), read_log(tmp_path / "one/log.csv")
    assert [r["step"] for r in ddp_rows] == [1, 2, 3, 4]
    for a, b in zip(ddp_rows, one_rows, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
        assert a["scm_mse"] == pytest.approx(b["scm_mse"], rel=1e-5)
    ddp_state = load_checkpoint(tmp_path / "ddp/checkpoints/step_00000004.pt")
    one_state = load_checkpoint(single.checkpoint)
    for key, value in one_state["model"].items():
        torch.testing.assert_close(ddp_state["model"][key], value, rtol=1e-4, atol=1e-5)
    assert len(ddp_state["rng"]) == 2  # one random state per process

    # The comparison can fail: one shard of 64 draws other noise and gives another loss.
    other = train(build_config("toy-moons", OVERRIDES), tmp_path / "other")
    assert read_log(tmp_path / "other/log.csv")[0]["loss"] != pytest.approx(one_rows[0]["loss"], rel=1e-3)
    del other
