"""The command line: train a toy preset, sample it, evaluate it; bad input fails in one line."""

import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from soflow_mini.cli import main
from soflow_mini.train import PRESETS, build_config, read_log

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--model.mlp_width", "64", "--model.mlp_depth=2", "--data.toy_size", "4096", "--train.batch_size", "64",
         "--train.steps", "4", "--train.log_every", "2", "--train.checkpoint_every", "2", "--train.sample_every", "4",
         "--train.grid_samples", "256", "--train.progress", "false", "--train.device", "cpu"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_module(*args, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "soflow_mini.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_toy_preset_trains_samples_and_evaluates(tmp_path, capsys):
    run = tmp_path / "run"
    proc = run_module("train", "toy-moons", "--run-dir", str(run), *SMALL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["steps"] == 4 and config["model"]["mlp_width"] == 64 and config["preset"] == "toy-moons"
    assert [row["step"] for row in read_log(run / "log.csv")] == [2, 4]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002.pt", "step_00000004.pt"]
    assert (run / "samples/step_00000004.png").is_file()

    out = tmp_path / "samples"
    assert main(["sample", str(run), "--out", str(out), "--num-samples", "300", "--batch-size", "128",
                 "--no-progress"]) == 0
    with np.load(out / "samples.npz") as npz:
        assert npz["points"].shape == (300, 2) and npz["points"].dtype == np.float32 and str(npz["toy"]) == "moons"
    assert (out / "grid.png").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(out / "samples.npz"), "--out", str(tmp_path / "metrics.json")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics == json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_samples"] == 300 and metrics["energy"] > metrics["energy_floor"]


@pytest.mark.parametrize("argv, message", [
    (["train", "toy-moonz"], "unknown preset 'toy-moonz'"),
    (["train", "toy-moons", "--train.lrr", "1e-3"], "unknown field train.lrr; did you mean train.lr?"),
    (["train", "toy-moons", "--train.lr", "fast"], "train.lr expects a number, got 'fast'"),
    (["train", "toy-moons", "--train.steps", "ten"], "train.steps expects an integer"),
    (["train", "toy-moons", "--model.arch", "unet"], "model.arch must be one of ['dit', 'mlp']"),
    (["train", "toy-moons", "--steps", "3"], "unrecognized argument '--steps'"),
    (["train", "toy-moons", "--train.steps"], "--train.steps needs a value"),
    (["train"], "a preset is required"),
    (["sample", "--out", "x", "--nfe", "0", "run"], "must be positive"),
    (["sample", "--out", "x", "--labels", "cat", "run"], "--labels must be 'random' or integers"),
    (["bake"], "expected a command"),
])
def test_bad_input_exits_with_one_line(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "error:" in err and message in err, err


def test_bad_input_from_a_real_process():
    proc = run_module("train", "toy-moons", "--train.lr", "fast")
    assert proc.returncode == 2
    assert proc.stderr == "soflow-train: error: train.lr expects a number, got 'fast'\n"


def test_missing_data_is_a_one_line_run_error(tmp_path, capsys):
    code = main(["train", "cifar10", "--data.root", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    files = ", ".join(f"data_batch_{i}" for i in range(1, 6))
    assert f"expected {files} in {tmp_path}/cifar-10-batches-py" in err


def test_list_and_print_config(capsys):
    assert main(["train", "--list-presets"]) == 0
    assert capsys.readouterr().out.split() == list(PRESETS)
    assert main(["train", "cifar10", "--print-config", "--train.lr", "3e-4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(build_config("cifar10", {"train.lr": 3e-4}).to_dict()))


def test_console_scripts_point_at_commands():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"soflow-train", "soflow-sample", "soflow-evaluate", "soflow-prepare-latents"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))
