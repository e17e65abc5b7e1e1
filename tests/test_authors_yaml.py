"""The authors' two published YAML configs, as they are: loss settings, whole runs, bad files."""

import dataclasses
import json

import pytest
import torch

from soflow_mini import SoFlowConfig, guidance_decay
from soflow_mini.cli import main
from soflow_mini.train import RunConfig, build_config, from_authors_yaml, read_log

from test_data_cifar10 import write_fake_cifar

# Their imagenet.yaml and cifar.yaml: the keys in their order, the published values
# (working_dir and dataset_path are folders of the user's machine).
IMAGENET_YAML = """\
working_dir: ./results/imagenet
noising_type: Linear
coefficient_type: Euler
model_type: DiT-B-4
dataset_type: Imagenet
data_size: 32
dataset_path: ./data/imagenet
velocity_loss_ratio: 0.75
p: 1.0
eps: 0.01
time_mean: [-0.2, -1.0, 0.2]
time_std: [1.0, 0.8, 0.8]
cfg_scale: 3.0
mix_ratio: 0.25
cfg_drop_rate: 0.1
cfg_decay_time: 0.8
l_schedule: Exponent
l_init_ratio: 0.1
l_end_ratio: 0.002
total_steps: 400000
ema_decay_rate: 0.9999
learning_rate: 0.0001
betas: [0.9, 0.99]
weight_decay: 0.0
batch_size: 256
num_workers: 8
prefetch_factor: 4
eval_steps: 25000
eval_batch_size: 125
eval_NFE: 1
eval_demo_steps: 1000
eval_demo_shape: [4, 8]
ckpt_saving_steps: 25000
logging_steps: 100
seed: 42
"""
CIFAR_YAML = """\
working_dir: ./results/cifar
noising_type: Linear
coefficient_type: Euler
model_type: UNet
dataset_type: CIFAR10
data_size: 32
dataset_path: ./data/cifar
velocity_loss_ratio: 0.0
p: 0.75
eps: 0.001
time_mean: [-0.9, -4.0, -0.9]
time_std: [1.6, 1.6, 1.6]
cfg_scale: 1.0
mix_ratio: 1.0
cfg_drop_rate: 0.0
cfg_decay_time: 1.0
l_schedule: Exponent
l_init_ratio: 1.0
l_end_ratio: 0.0003125
total_steps: 800000
ema_decay_rate: 0.9999
learning_rate: 0.0001
betas: [0.9, 0.999]
weight_decay: 0.0
batch_size: 1024
num_workers: 12
prefetch_factor: 6
eval_steps: 25000
eval_batch_size: 125
eval_NFE: 1
eval_demo_steps: 1000
eval_demo_shape: [4, 8]
ckpt_saving_steps: 25000
logging_steps: 100
seed: 42
"""
PUBLISHED = {"imagenet.yaml": (IMAGENET_YAML, "imagenet256-b4", "imagenet256"), "cifar.yaml": (CIFAR_YAML, "cifar10", "cifar10")}
# The fields that their files set to other values than the presets (bookkeeping, not the recipe).
BOOKKEEPING = {"data.root", "train.seed", "train.sample_every", "train.checkpoint_every", "train.grid_samples"}


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def replace_line(text, key, line):
    lines = [line if row.startswith(f"{key}:") else row for row in text.splitlines()]
    assert lines != text.splitlines(), key
    return "\n".join(lines) + "\n"


def flat(config: RunConfig) -> dict:
    return {f"{s}.{k}": v for s, section in config.to_dict().items() if isinstance(section, dict)
            for k, v in section.items()}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_files_equal_the_presets_field_by_field(tmp_path, name):
    text, preset, loss_preset = PUBLISHED[name]
    path = write(tmp_path, text, name)
    assert SoFlowConfig.from_yaml(path) == SoFlowConfig.preset(loss_preset)
    config = RunConfig.from_authors_yaml(path)
    reference = build_config(preset)
    assert config.preset == preset
    mine, theirs = flat(config), flat(reference)
    assert mine.keys() == theirs.keys()
    differ = {key for key in mine if mine[key] != theirs[key]}
    assert differ == BOOKKEEPING, differ
    assert (config.data.root, config.train.seed, config.train.sample_every) == (f"./data/{name[:-5]}", 42, 1000)
    assert (config.train.checkpoint_every, config.train.grid_samples) == (25_000, 32)
    # what the files do not say comes from the preset: the optimiser, EMA rule, augmentation, TF32
    expected = ("radam", 16, "float64", 0.12) if name == "cifar.yaml" else ("adamw", 1, "float32", 0.0)
    assert (config.train.optimizer, config.train.ema_every, config.train.ema_dtype, config.data.augment_p) == expected
    assert config.train.tf32


def test_cifar_file_disables_the_guidance_decay():
    t = torch.linspace(0, 1, 11)
    assert torch.equal(guidance_decay(t, 1.0), torch.ones(11))


def test_yaml_1_1_number_strings_are_numbers(tmp_path):
    """PyYAML reads 1e-2 (no dot) as a string; it is a number here."""
    text = replace_line(replace_line(CIFAR_YAML, "eps", "eps: 1e-3"), "learning_rate", "learning_rate: 1e-4")
    path = write(tmp_path, text)
    assert SoFlowConfig.from_yaml(path).eps == 1e-3
    assert from_authors_yaml(path).train.lr == 1e-4
    assert SoFlowConfig.from_yaml(write(tmp_path, "eps: 1e-2\n")).eps == 0.01


@pytest.mark.parametrize("text, message", [
    ("velocity_loss_raito: 0.5\n", "unknown SoFlowConfig field velocity_loss_raito; did you mean velocity_loss_ratio?"),
    ("", "is empty: expected a mapping"),
    ("- 1\n- 2\n", "must hold a mapping"),
    ("eps: [1, 2\n", "is not valid YAML"),
    ("eps: small\n", "eps expects a number, got 'small'"),
    ("loss:\n  eps: 0.01\n", "unknown SoFlowConfig field loss"),
    ("p: -1\n", "p must be >= 0"),
])
def test_soflow_from_yaml_errors_name_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="^" + str(path)) as info:
        SoFlowConfig.from_yaml(path)
    assert message in str(info.value)


@pytest.mark.parametrize("edit, message", [
    (("velocity_loss_ratio", "velocity_loss_raito: 0.0"), "unknown key velocity_loss_raito; did you mean velocity_loss_ratio?"),
    (("model_type", "model_type: DiT-B-3"), "unknown model_type 'DiT-B-3'; did you mean 'DiT-B-4'?"),
    (("dataset_type", "dataset_type: MNIST"), "unknown dataset_type 'MNIST'"),
    (("model_type", "model_type: DiT-B-2"), "model_type DiT-B-2 with dataset_type CIFAR10 is not a setting"),
    (("data_size", "data_size: 64"), "data_size must be 32"),
    (("learning_rate", "learning_rate: fast"), "learning_rate expects a number, got 'fast'"),
    (("batch_size", "batch_size: 0"), "batch_size (train.batch_size) must be > 0, got 0"),
    (("betas", "betas: [0.9]"), "betas expects 2 comma-separated values"),
    (("eval_demo_shape", "eval_demo_shape: [0, 8]"), "eval_demo_shape must be two positive integers"),
    (("noising_type", "noising_type: Cosine"), "unknown noising_type 'cosine'"),
    (("seed", "# no seed"), "lacks the keys ['seed']"),
])
def test_authors_yaml_errors_name_the_key(tmp_path, edit, message):
    path = write(tmp_path, replace_line(CIFAR_YAML, *edit))
    with pytest.raises(ValueError, match="^" + str(path)) as info:
        from_authors_yaml(path)
    assert message in str(info.value)


def test_triangular_is_trig(tmp_path):
    text = replace_line(IMAGENET_YAML, "coefficient_type", "coefficient_type: Triangular")
    config = from_authors_yaml(write(tmp_path, replace_line(text, "noising_type", "noising_type: Trig")))
    assert (config.soflow.noising_type, config.soflow.coefficient_type) == ("trig", "trig")


def test_cli_print_config_and_one_line_errors(tmp_path, capsys):
    path = write(tmp_path, IMAGENET_YAML, "imagenet.yaml")
    assert main(["train", "--config", str(path), "--print-config", "--train.lr", "3e-4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(from_authors_yaml(path, {"train.lr": "3e-4"}).to_dict()))
    assert printed["model"]["dit_size"] == "DiT-B/4" and printed["train"]["lr"] == 3e-4
    bad = write(tmp_path, replace_line(IMAGENET_YAML, "p", "q: 1.0"))
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key q" in err and "Traceback" not in err


TINY_DIT = ["--model.arch", "dit", "--data.augment_p", "0", "--model.dit_size", "DiT-T/4", "--model.hidden_size", "32",
            "--model.depth", "1", "--model.num_heads", "2"]
CPU_RUN = ["--train.steps", "2", "--train.batch_size", "4", "--train.log_every", "1", "--train.grid_samples", "4",
           "--train.progress", "false", "--train.device", "cpu"]


def test_cli_trains_their_cifar_file_on_fake_batches_with_a_dit(tmp_path):
    """The --config path end to end on a CPU, the network swapped for a tiny DiT."""
    write_fake_cifar(tmp_path)
    path = write(tmp_path, replace_line(CIFAR_YAML, "dataset_path", f"dataset_path: {tmp_path}"), "cifar.yaml")
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--run-dir", str(run), *TINY_DIT, *CPU_RUN]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["optimizer"] == "radam" and saved["train"]["steps"] == 2 and saved["preset"] == "cifar10"
    assert [row["step"] for row in read_log(run / "log.csv")] == [1, 2]


def test_cli_trains_their_cifar_file_with_the_unet(tmp_path):
    """cifar.yaml as published, on fake CIFAR batches, with the U-Net shrunk for a CPU."""
    pytest.importorskip("soflow_mini.nets.unet")
    pytest.importorskip("soflow_mini.data.augment")
    write_fake_cifar(tmp_path)
    path = write(tmp_path, replace_line(CIFAR_YAML, "dataset_path", f"dataset_path: {tmp_path}"), "cifar.yaml")
    run = tmp_path / "run"
    small = ["--model.unet_channels", "16", "--model.unet_blocks", "1"]
    assert main(["train", "--config", str(path), "--run-dir", str(run), *small, *CPU_RUN]) == 0
    rows = read_log(run / "log.csv")
    assert [row["step"] for row in rows] == [1, 2] and all(row["loss"] == row["loss"] for row in rows)


def test_dataclass_fields_of_their_files_are_all_known():
    """Every key of the published files is a loss field or one of the known run keys."""
    from soflow_mini.config import AUTHORS_RUN_KEYS

    keys = [line.split(":")[0] for line in IMAGENET_YAML.splitlines()]
    fields = {f.name for f in dataclasses.fields(SoFlowConfig)}
    assert set(keys) == fields | set(AUTHORS_RUN_KEYS)
    assert keys == [line.split(":")[0] for line in CIFAR_YAML.splitlines()]
