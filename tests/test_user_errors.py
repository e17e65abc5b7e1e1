"""Every mistake a careless or offline user makes ends in one line that names the problem.

Command-line cases run the commands' main functions in this process (a few, which need a
fresh interpreter, as subprocesses) and check: the exit status, one line on stderr naming
the problem, no "Traceback", and that no file of the run was lost or changed. Python cases
check the exception and its message.
"""

import hashlib
import json
import os
import pydoc
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from torch import nn

from soflow_mini import (
    ConsistencyTraining, Diffusion, FlowMatching, MeanFlow, SoFlow, SoFlowConfig, ToyMLP,
)
from soflow_mini.cli import main
from soflow_mini.train import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--model.mlp_width", "32", "--model.mlp_depth=1", "--data.toy_size", "1024", "--train.batch_size", "32",
         "--train.steps", "4", "--train.log_every", "2", "--train.checkpoint_every", "2", "--train.sample_every", "0",
         "--train.grid_samples", "16", "--train.progress", "false", "--train.device", "cpu"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "moons"
    assert main(["train", "toy-moons", "--run-dir", str(run), *SMALL]) == 0
    return run


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> content hash of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse
        code = stop.code
    return code, capsys.readouterr().err


def assert_one_line(err: str, needle: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert len(lines[0]) < 400, lines[0]


# ---------------------------------------------------------------- command line, table-driven
def _setup_npy_random(tmp):
    np.save(tmp / "random.npy", np.random.default_rng(0).normal(size=(50, 5)))
    return ["evaluate", str(tmp / "random.npy")]


def _setup_npy_points(tmp):
    np.save(tmp / "points.npy", np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32))
    return ["evaluate", str(tmp / "points.npy")]


def _setup_nan_points(tmp):
    points = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    points[3] = np.nan
    np.savez(tmp / "nan.npz", points=points, toy=np.array("moons"))
    return ["evaluate", str(tmp / "nan.npz")]


def _setup_run_dir_file(tmp):
    (tmp / "afile").write_text("keep me\n")
    return ["train", "toy-moons", "--run-dir", str(tmp / "afile"), *SMALL]


def _setup_out_file(tmp, run):
    (tmp / "afile").write_text("keep me\n")
    return ["sample", str(run), "--out", str(tmp / "afile"), "--no-progress"]


def _setup_text_checkpoint(tmp):
    (tmp / "notes.pt").write_text("hello\n")
    return ["sample", str(tmp / "notes.pt"), "--out", str(tmp / "out")]


def _setup_json_checkpoint(tmp, run):
    return ["sample", str(run / "config.json"), "--out", str(tmp / "out")]


def _setup_corrupt_checkpoint(tmp, run):
    data = (run / "checkpoints" / "step_00000004.pt").read_bytes()
    (tmp / "bad.pt").write_bytes(data[: len(data) // 2])
    return ["sample", str(tmp / "bad.pt"), "--out", str(tmp / "out")]


def _setup_custom_net_checkpoint(tmp):
    save_checkpoint({"step": 3, "model": {"w": torch.zeros(2)}, "ema": {}}, tmp / "custom" / "checkpoints" / "step_00000003.pt")
    return ["sample", str(tmp / "custom"), "--out", str(tmp / "out")]


def _setup_export_exists(tmp, run):
    (tmp / "weights.pt").write_text("keep me\n")
    return ["export", str(run), str(tmp / "weights.pt")]


def _setup_export_usage(tmp):
    return ["export"]


def _setup_cifar_offline(tmp, monkeypatch):
    import torchvision.datasets.cifar as cifar

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    return ["train", "cifar10-cond", "--data.download", "true", "--data.root", str(tmp / "data"),
            "--run-dir", str(tmp / "cifar-run"), "--train.device", "cpu"]


def _setup_inception_offline(tmp, monkeypatch):
    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(fe, "load_state_dict_from_url", offline)
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp / "images.npz", arr_0=images)
    np.savez(tmp / "ref.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    return ["evaluate", str(tmp / "images.npz"), "--reference", str(tmp / "ref.npz"), "--device", "cpu",
            "--no-progress"]


def _setup_train_cuda(tmp):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    return ["train", "toy-moons", "--run-dir", str(tmp / "cuda-run"), *SMALL[:-2], "--train.device", "cuda"]


def _setup_sample_cuda(tmp, run):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    return ["sample", str(run), "--out", str(tmp / "out"), "--device", "cuda"]


def _setup_bad_label(tmp, run):
    return ["sample", str(run), "--out", str(tmp / "out"), "--labels", "1"]  # an unconditional toy run


CASES = {
    # name: (setup, exit status, text on the one line)
    "evaluate a .npy of random numbers": (_setup_npy_random, 1, "expected images uint8"),
    "evaluate .npy points without --toy": (_setup_npy_points, 1, "--toy is required"),
    "evaluate NaN points": (_setup_nan_points, 1, "1 of 50 points are NaN or infinite"),
    "evaluate images offline": (_setup_inception_offline, 1, "could not download the Inception weights"),
    "train cifar10 offline": (_setup_cifar_offline, 1, "could not download CIFAR-10 from https://"),
    "--run-dir names a file": (_setup_run_dir_file, 1, "is an existing file; choose another --run-dir"),
    "sample --out names a file": (_setup_out_file, 1, "--out"),
    "--train.device cuda without a GPU": (_setup_train_cuda, 1, "'cuda' is not available on this machine"),
    "sample --device cuda without a GPU": (_setup_sample_cuda, 1, "'cuda' is not available on this machine"),
    "a text file as checkpoint": (_setup_text_checkpoint, 1, "is not a checkpoint: not a file written by torch.save"),
    "config.json as checkpoint": (_setup_json_checkpoint, 1, "is not a checkpoint (it holds JSON"),
    "a truncated checkpoint": (_setup_corrupt_checkpoint, 1, "corrupt or truncated checkpoint"),
    "a Trainer run of a custom net": (_setup_custom_net_checkpoint, 1, "build your model in Python"),
    "export onto an existing file": (_setup_export_exists, 1, "exists; pass --force to overwrite it"),
    "export without arguments": (_setup_export_usage, 2, "soflow-export: error:"),
    "labels of an unconditional run": (_setup_bad_label, 1, "labels must be left out"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_command_line_input_is_one_line(name, tmp_path, finished_run, capsys, monkeypatch):
    setup, status, needle = CASES[name]
    kwargs = {}
    names = setup.__code__.co_varnames[: setup.__code__.co_argcount]
    if "run" in names:
        kwargs["run"] = finished_run
    if "monkeypatch" in names:
        kwargs["monkeypatch"] = monkeypatch
    argv = setup(tmp_path, **kwargs)
    before, run_before = snapshot(tmp_path), snapshot(finished_run)
    code, err = run_cli(argv, capsys)
    assert code == status, err
    assert_one_line(err, needle)
    assert snapshot(tmp_path) == before  # nothing written, changed or lost (config.json included)
    assert snapshot(finished_run) == run_before


def test_corrupt_only_checkpoint_is_refused_then_restarted_on_purpose(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "toy-moons", "--run-dir", str(run), *SMALL, "--train.keep_checkpoints", "1"]) == 0
    ckpt = run / "checkpoints" / "step_00000004.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:500])
    before = snapshot(run)
    code, err = run_cli(["train", "toy-moons", "--run-dir", str(run), *SMALL], capsys)
    assert code == 1
    assert_one_line(err, "--restart")
    assert str(ckpt) in err and "corrupt or truncated" in err
    assert snapshot(run) == before  # log.csv, config.json and the damaged file are kept
    code, err = run_cli(["train", "toy-moons", "--run-dir", str(run), "--restart", *SMALL], capsys)
    assert code == 0, err
    assert "previous-1" in err
    kept = {k.removeprefix("previous-1/"): v for k, v in snapshot(run).items() if k.startswith("previous-1/")}
    assert kept == before
    assert (run / "checkpoints" / "step_00000004.pt").is_file()


def test_finished_run_says_so_and_resume_line_shows_without_progress(tmp_path, finished_run, capsys):
    before = snapshot(finished_run)
    code, err = run_cli(["train", "toy-moons", "--run-dir", str(finished_run), *SMALL], capsys)
    assert code == 0
    assert_one_line(err, "already finished at step 4")
    assert snapshot(finished_run) == before
    run = tmp_path / "run"
    assert main(["train", "toy-moons", "--run-dir", str(run), *SMALL, "--train.steps", "2"]) == 0
    with pytest.warns(UserWarning, match="other values of train.steps; using the new ones"):
        code, err = run_cli(["train", "toy-moons", "--run-dir", str(run), *SMALL], capsys)
    assert code == 0 and "resuming from" in err and "step 2" in err


def test_failed_start_leaves_no_config(tmp_path, capsys):
    code, err = run_cli(["train", "cifar10", "--data.root", str(tmp_path / "none"), "--run-dir",
                         str(tmp_path / "run")], capsys)
    assert code == 1 and "CIFAR-10 not found" in err
    assert not (tmp_path / "run").exists()


def test_evaluate_points_npy_and_integer_counts(tmp_path, capsys):
    np.save(tmp_path / "points.npy", np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "points.npy"), "--toy", "moons"]) == 0
    text = capsys.readouterr().out
    metrics = json.loads(text)
    assert '"num_samples": 60,' in text and isinstance(metrics["num_samples"], int)


def test_digits_samples_evaluate_offline(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from soflow_mini.data.digits import load_digits_images
    from soflow_mini.evaluation.digits import precision_recall

    images, _ = load_digits_images()
    np.savez(tmp_path / "real.npz", arr_0=images[:300])
    np.savez(tmp_path / "blank.npz", arr_0=np.zeros((300, 8, 8, 1), np.uint8))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "real.npz")]) == 0
    real = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(tmp_path / "blank.npz"), "--reference", "digits"]) == 0
    blank = json.loads(capsys.readouterr().out)
    assert real["precision"] == 1.0  # the data's own images lie in the data's balls
    assert blank["recall"] < 0.05 < real["recall"]
    # a known answer: points on a line, k = 1
    a = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    b = torch.tensor([[0.2], [0.5], [10.0], [10.1]], dtype=torch.float64)  # sample radii 0.3, 0.3, 0.1, 0.1
    assert precision_recall(b, a, k=1) == (0.5, 0.25)


@pytest.mark.parametrize("args, needle", [
    (["--help"], "usage: python -m soflow_mini.cli"),
    (["--version"], "soflow_mini 0.1.0"),
    (["train", "--version"], "soflow-train (soflow_mini) 0.1.0"),
    (["sample", "--help"], "(default: 64)"),
    (["train", "--help"], "--restart"),
])
def test_module_help_and_version(args, needle):
    proc = subprocess.run([sys.executable, "-m", "soflow_mini.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert needle in proc.stdout


def test_ctrl_c_during_start_up_imports_is_one_line():
    script = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def interrupted(name, *args, **kwargs):\n"
        "    if name == 'torch' or name.startswith('torch.'):\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *args, **kwargs)\n"
        "from soflow_mini.cli import train_main\n"  # what the console script does first
        "builtins.__import__ = interrupted\n"
        "sys.exit(train_main(['toy-moons']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 130
    assert_one_line(proc.stderr, "soflow-train: interrupted")


def test_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    assert main(["train", "toy-moons", "--run-dir", str(run), *SMALL[:-8], "--train.sample_every", "2",
                 "--train.grid_samples", "16", "--train.progress", "false", "--train.device", "cpu",
                 "--train.tensorboard", "true"]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [2, 4]
    assert [e.step for e in events.Images("samples")] == [2, 4]


# ---------------------------------------------------------------- Python API
class Narrow(nn.Module):
    """Returns (B, 1) for x (B, 2): broadcasting would hide it."""

    num_classes = 0

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x, t, s, y=None):
        return self.lin(x)


class NoLabels(nn.Module):
    def forward(self, x, t, s):
        return x


class ConditionalWithoutCount(nn.Module):  # takes labels but does not say how many classes
    def forward(self, x, t, s, y=None):
        return x * 0


MODELS = {"SoFlow": SoFlow, "FlowMatching": FlowMatching, "MeanFlow": MeanFlow,
          "ConsistencyTraining": ConsistencyTraining, "Diffusion": Diffusion}


@pytest.mark.parametrize("name", list(MODELS))
def test_network_output_shape_is_checked(name):
    model = MODELS[name](Narrow())
    x = torch.randn(8, 2)
    with pytest.raises(ValueError, match=r"returned shape \(8, 1\) for x of shape \(8, 2\); the contract is net\(x, t, s, y\)"):
        model.loss(x, step=0, total_steps=10)
    with pytest.raises(ValueError, match=r"returned shape \(8, 1\)"):
        model.sample(x)


@pytest.mark.parametrize("name", list(MODELS))
def test_network_without_y_is_caught_when_wrapped(name):
    with pytest.raises(ValueError, match=r"cannot be called as net\(x, t, s, y\)"):
        MODELS[name](NoLabels())


@pytest.mark.parametrize("name", list(MODELS))
def test_labels_are_checked_everywhere(name):
    model = MODELS[name](ToyMLP(width=8, depth=1, num_classes=3))
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"class labels in \[0, 2\], got values in \[0, 7\]"):
        model.loss(x, torch.tensor([0, 1, 7, 2]), step=0, total_steps=10)
    with pytest.raises(ValueError, match="3 is the null class: use y=None or cfg_mask"):
        model.loss(x, torch.tensor([0, 1, 3, 2]), step=0, total_steps=10)
    with pytest.raises(ValueError, match="null class"):
        model.sample(x, torch.tensor([3, 3, 3, 3]))
    model.sample(x, None)  # y=None: the unconditional prediction, the explicit way


def test_unconditional_net_with_labels_says_what_to_set():
    model = SoFlow(ConditionalWithoutCount())
    with pytest.raises(ValueError, match="set net.num_classes = K"):
        model.loss(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), step=0, total_steps=1)


def test_float32_times_read_as_typed():
    model = SoFlow(ToyMLP(width=8, depth=1))
    with pytest.raises(ValueError, match=r"s must lie in \[0, 1\], got -0.1$"):
        model.solution(torch.randn(4, 2), t=0.5, s=torch.full((4,), -0.1))


@pytest.mark.parametrize("name", ["SoFlow", "ConsistencyTraining"])
def test_forward_without_step_says_what_to_call(name):
    model = MODELS[name](ToyMLP(width=8, depth=1))
    with pytest.raises(ValueError, match=r"forward is its training loss: call model\(x0, y, step=k, total_steps=K\)"):
        model(torch.randn(4, 2))
    loss, _ = model(torch.randn(4, 2), step=0, total_steps=1)
    assert loss.dim() == 0


@pytest.mark.parametrize("name", list(MODELS))
def test_sample_restores_the_mode_it_found(name):
    seen = []

    class Probe(ToyMLP):
        def forward(self, x, t, s, y=None):
            seen.append(self.training)
            return super().forward(x, t, s, y)

    model = MODELS[name](Probe(width=8, depth=1))
    for mode in (True, False):
        model.train(mode)
        model.sample(torch.randn(3, 2))
        assert model.training is mode and model.net.training is mode
    assert seen and not any(seen)  # the network always ran in eval mode


def test_times_one_positional_two_keyword_only():
    model = SoFlow(ToyMLP(width=8, depth=1))
    x = torch.randn(4, 2)
    torch.testing.assert_close(model.velocity(x, 0.5), model.velocity(x, t=0.5))
    with pytest.raises(TypeError):
        model.solution(x, 0.5, 0.1)  # two times: keyword-only, never swapped by position
    ct = ConsistencyTraining(ToyMLP(width=8, depth=1))
    torch.testing.assert_close(ct.consistency_function(x, 0.5), ct.consistency_function(x, t=0.5))


@pytest.mark.parametrize("name", list(MODELS))
def test_help_shows_the_class_example_not_module_init(name):
    text = pydoc.render_doc(MODELS[name], renderer=pydoc.plaintext)
    assert "Example::" in text
    assert "Initialize internal Module state" not in text


def test_custom_data_class_is_exported():
    from soflow_mini.train import ImageData

    data = ImageData(np.zeros((4, 8, 8, 1), np.uint8), np.zeros(4, np.int64), 0, hflip=False)
    assert data.spec.shape == (1, 8, 8)


def test_config_module_docstring_states_the_contract():
    import soflow_mini

    assert "net(x, t, s, y) -> F" in soflow_mini.__doc__ and "num_classes = K" in soflow_mini.__doc__
    assert isinstance(SoFlowConfig(), SoFlowConfig)
