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
    (["train", "toy-moons", "--model.arch", "resnet"], "model.arch must be one of ['dit', 'unet', 'mlp']"),
    (["train", "toy-moons", "--steps", "3"], "unrecognized argument '--steps'"),
    (["train", "toy-moons", "--train.steps"], "--train.steps needs a value"),
    (["train"], "a preset or --config YAML is required"),
    (["train", "toy-moon"], "unknown preset 'toy-moon'; did you mean 'toy-moons'?"),
    (["train", "toy"], "'toy' is a loss preset"),
    (["train", "toy-moons", "--config", "x.yaml"], "give a preset or --config, not both"),
    (["train", "--config", "no-such.yaml"], "config file not found: no-such.yaml"),
    (["train", "digits", "--model.dit_size", "DiT-Z/9"], "error: unknown model.dit_size 'DiT-Z/9'"),
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
    assert set(scripts) == {"soflow-train", "soflow-sample", "soflow-evaluate", "soflow-prepare-latents", "soflow-export"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))


TINY_DIGITS = ["--model.hidden_size", "32", "--model.depth", "1", "--model.num_heads", "2", "--train.batch_size", "16",
               "--train.steps", "3", "--train.log_every", "1", "--train.checkpoint_every", "3",
               "--train.sample_every", "0", "--train.progress", "false", "--train.device", "cpu"]


def test_export_writes_the_ema_weights_that_load_and_sample(tmp_path, capsys):
    from soflow_mini.train import load_checkpoint, load_model

    run = tmp_path / "digits"
    assert main(["train", "digits", "--run-dir", str(run), *TINY_DIGITS]) == 0
    out = tmp_path / "export" / "digits_dit.pt"
    capsys.readouterr()
    assert main(["export", str(run), str(out), "--dtype", "float16"]) == 0
    assert str(out) in capsys.readouterr().out

    state = load_checkpoint(out)
    assert set(state) == {"step", "weights", "model", "config", "data_spec"}  # no optimizer, online weights, rng
    assert state["weights"] == "ema" and state["step"] == 3
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    assert out.stat().st_size < 0.3 * (run / "checkpoints" / "step_00000003.pt").stat().st_size

    exported, spec, config, step = load_model(out)
    averaged, *_ = load_model(run)  # EMA weights of the training checkpoint, float32
    online, *_ = load_model(run, ema=False)
    assert step == 3 and spec.shape == (1, 8, 8) and config.preset == "digits"
    for (name, p), q, r in zip(exported.named_parameters(), averaged.parameters(), online.parameters(), strict=True):
        assert p.dtype == torch.float32
        assert torch.equal(p, q.half().float()), name  # the EMA weights, rounded to float16
    assert any(not torch.equal(q, r) for q, r in zip(averaged.parameters(), online.parameters()))

    samples = tmp_path / "samples"
    assert main(["sample", str(out), "--out", str(samples), "--num-samples", "20", "--batch-size", "10",
                 "--labels", "0,1,2", "--nfe", "2", "--no-progress"]) == 0
    with np.load(samples / "samples.npz") as npz:
        assert npz["arr_0"].shape[0] == 20 and list(npz["arr_1"][:4]) == [0, 1, 2, 0]

    assert main(["export", str(run), str(tmp_path / "full.pt")]) == 0  # float32 by default
    full, *_ = load_model(tmp_path / "full.pt")
    assert all(torch.equal(p, q) for p, q in zip(full.parameters(), averaged.parameters(), strict=True))


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "x.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint not found" in err
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert main(["export", str(empty), str(tmp_path / "x.pt")]) == 1
    assert "no checkpoint in" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(empty), str(tmp_path / "x.pt"), "--dtype", "float8"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_online_weights_of_an_export_are_refused(tmp_path, capsys):
    run = tmp_path / "digits"
    assert main(["train", "digits", "--run-dir", str(run), *TINY_DIGITS]) == 0
    assert main(["export", str(run), str(tmp_path / "e.pt")]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "e.pt"), "--out", str(tmp_path / "s"), "--online", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "EMA weights only" in err
