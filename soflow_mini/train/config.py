"""Run configuration: typed sections, the preset registry and field-by-field overrides.

A run is one ``RunConfig``: the sections model, data, train and one per training method
(soflow, flow_matching, meanflow). A preset is a nested dict of field values applied on top
of the defaults; the command line then overrides single fields (``--train.lr 2e-4``).
Every value is converted to its field's type and every option is checked when the config
is built, so a typo fails at once with a message that names the field.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import torch

from .. import _checks, _values
from ..baselines import FlowMatchingConfig, MeanFlowConfig
from ..config import AUTHORS_RUN_KEYS, LOSS_PRESETS, SoFlowConfig
from ..data import TOY_DATASETS
from ..nets import DIT_SIZES

Arch = Literal["dit", "unet", "mlp"]
DatasetName = Literal["toy", "digits", "cifar10", "latents"]
Method = Literal["soflow", "flow_matching", "meanflow"]
LogFormat = Literal["csv", "jsonl"]
EmaDtype = Literal["float32", "float64"]
Optimizer = Literal["adamw", "radam"]


# ---------------------------------------------------------------- value conversion
coerce = _values.coerce  # shared with SoFlowConfig and the YAML readers
_number = _values.number


def _positive(prefix: str, section: object, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(section, name)
        if value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{prefix}.{name} must be {bound}, got {value}")


# ---------------------------------------------------------------- sections
@dataclass
class ModelConfig:
    """The network. arch "dit": a registered DiT size, optionally resized field by field;
    arch "unet": the EDM U-Net of the paper's CIFAR-10 runs (``SongUNet``, its published
    configuration; unet_channels and unet_blocks shrink it, e.g. for a CPU test);
    arch "mlp": the residual ToyMLP for 2D data."""

    arch: Arch = "dit"
    dit_size: str = "DiT-T/2"
    patch_size: int | None = None
    hidden_size: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    unet_channels: int | None = None
    unet_blocks: int | None = None
    mlp_width: int = 256
    mlp_depth: int = 4

    def __post_init__(self) -> None:
        sizes = {k.lower(): k for k in DIT_SIZES}
        if self.dit_size.lower() not in sizes:
            raise ValueError(f"unknown model.dit_size {self.dit_size!r}; choose one of {list(DIT_SIZES)}")
        self.dit_size = sizes[self.dit_size.lower()]
        _positive("model", self, "mlp_width", "mlp_depth")
        for name in ("patch_size", "hidden_size", "depth", "num_heads", "unet_channels", "unet_blocks"):
            if getattr(self, name) is not None:
                _positive("model", self, name)

    @property
    def name(self) -> str:
        """A short name of the network: "DiT-B/2", "U-Net" or "MLP"."""
        return {"dit": self.dit_size, "unet": "U-Net", "mlp": "MLP"}[self.arch]


@dataclass
class DataConfig:
    """The training data. ``root`` is the folder that holds cifar-10-batches-py (cifar10) or
    the prepared latent set (latents); toys and digits need no files.

    hflip: random left-right flips of the images. augment_p: probability of EDM's
    non-leaking geometric augmentation (the paper's CIFAR-10 runs use 0.12); its 6 labels
    condition the network in both loss terms. 0 switches it off.
    """

    dataset: DatasetName = "toy"
    toy: str = "checkerboard"
    toy_size: int = 100_000
    root: str = "data"
    download: bool = False
    conditional: bool = False
    hflip: bool = False
    augment_p: float = 0.0

    def __post_init__(self) -> None:
        _checks.choice("data.toy", self.toy, TOY_DATASETS)
        _positive("data", self, "toy_size")
        if not 0.0 <= self.augment_p <= 1.0:
            raise ValueError(f"data.augment_p must lie in [0, 1], got {self.augment_p}")


@dataclass
class TrainConfig:
    """Optimisation, EMA, precision, logging, sampling and checkpoint intervals.

    batch_size is the global batch: it is cut into world_size * grad_accum equal shards,
    and the random draws of shard j at step k depend only on (seed, k, j), so a run gives
    the same result on any number of processes with the same global batch.
    micro_batch (> 0) caps the samples of one forward/backward pass: each process then runs
    the smallest grad_accum >= train.grad_accum whose shards hold at most micro_batch
    samples, and the run equals one with that grad_accum given (or that many processes).
    optimizer: "adamw" (the authors' ImageNet runs) or "radam" (their CIFAR-10 runs).
    tf32: TF32 matmuls and cuDNN convolutions on CUDA, as the authors train (no effect on a CPU).
    ema_decay is the decay per step: with ema_every N the average is updated every N steps
    with ema_decay ** N (in float64), the authors' CIFAR-10 rule.
    Intervals of 0 mean "only at the end of training".
    """

    method: Method = "soflow"
    steps: int = 2000
    batch_size: int = 256
    grad_accum: int = 1
    micro_batch: int = 0
    optimizer: Optimizer = "adamw"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    ema_decay: float = 0.9999
    ema_every: int = 1
    ema_dtype: EmaDtype = "float32"
    ema_warmup: bool = False
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    tf32: bool = False
    compile: bool = False
    log_every: int = 100
    log_format: LogFormat = "csv"
    tensorboard: bool = False  # also write TensorBoard event files (loss curves, sample grids)
    progress: bool = True
    sample_every: int = 0
    grid_samples: int = 64
    sample_nfe: int = 1
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        _positive("train", self, "steps", "batch_size", "grad_accum", "lr", "ema_every", "log_every",
                  "grid_samples", "sample_nfe", "keep_checkpoints")
        _positive("train", self, "weight_decay", "grad_clip", "sample_every", "checkpoint_every", "micro_batch",
                  allow_zero=True)
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"train.ema_decay must lie in [0, 1], got {self.ema_decay}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"train.betas must lie in [0, 1), got {self.betas}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ValueError(f"train.device must be 'auto' or a device such as cpu, cuda, cuda:1, "
                                 f"got {self.device!r}") from None


SECTIONS: dict[str, type] = {
    "model": ModelConfig, "data": DataConfig, "train": TrainConfig,
    "soflow": SoFlowConfig, "flow_matching": FlowMatchingConfig, "meanflow": MeanFlowConfig,
}


@dataclass
class RunConfig:
    """Everything a run needs; saved as JSON in the run folder and in every checkpoint."""

    preset: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    soflow: SoFlowConfig = field(default_factory=SoFlowConfig)
    flow_matching: FlowMatchingConfig = field(default_factory=FlowMatchingConfig)
    meanflow: MeanFlowConfig = field(default_factory=MeanFlowConfig)

    def to_dict(self) -> dict[str, Any]:
        """All sections as nested dicts (tuples stay tuples; JSON turns them into lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_authors_yaml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> "RunConfig":
        """The run one of the authors' YAML configs describes (see ``from_authors_yaml``)."""
        return from_authors_yaml(path, overrides)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunConfig":
        """Inverse of ``to_dict`` (JSON lists become tuples again); unknown keys fail."""
        unknown = set(values) - set(SECTIONS) - {"preset"}
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; expected {sorted(SECTIONS)}")
        sections = {name: build_section(name, values.get(name, {})) for name in SECTIONS}
        return cls(preset=str(values.get("preset", "")), **sections)


def build_section(name: str, values: Mapping[str, Any]):
    """Build section ``name`` from field values (strings or JSON values), checking each."""
    cls = SECTIONS[name]
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(_values.unknown("field", f"{name}.{key}", [f"{name}.{f}" for f in fields]))
        kwargs[key] = coerce(f"{name}.{key}", value, hints[key])
    try:
        return cls(**kwargs)
    except ValueError as err:  # the section's own check: prefix the section if missing
        message = str(err)
        named = f"{name}." in message  # e.g. "unknown model.dit_size ..." already names it
        raise ValueError(message if named else f"{name}: {message}") from None


# ---------------------------------------------------------------- presets (the one lookup table)
def _toy(name: str) -> dict:
    return dict(
        model=dict(arch="mlp", mlp_width=256, mlp_depth=4),
        data=dict(dataset="toy", toy=name),
        train=dict(steps=2000, batch_size=512, lr=1e-3, ema_decay=0.999, ema_warmup=True,
                   log_every=50, sample_every=500, checkpoint_every=500, grid_samples=4096),
        soflow=SoFlowConfig.preset("toy").to_dict(),
    )


# ImageNet-256: published loss settings, AdamW betas (0.9, 0.99), batch 256, EMA 0.9999,
# TF32 as the authors train. B/4 runs 400k steps; B/2 .. XL/2 run 240 epochs of 1,281,167
# images = 1,201,094 steps. micro_batch: the largest power of two whose estimated float32
# peak memory fits one 80 GB GPU with a margin (README, "Memory"); 0: the whole batch fits.
def _imagenet(size: str, steps: int, micro_batch: int) -> dict:
    return dict(
        model=dict(arch="dit", dit_size=size),
        data=dict(dataset="latents", root="data/imagenet256-latents", conditional=True),
        train=dict(steps=steps, batch_size=256, micro_batch=micro_batch, optimizer="adamw", lr=1e-4,
                   betas=(0.9, 0.99), ema_decay=0.9999, tf32=True, log_every=100, sample_every=10_000,
                   checkpoint_every=10_000, grid_samples=64),
        soflow=SoFlowConfig.preset("imagenet256").to_dict(),
    )


# CIFAR-10, the paper's recipe: EDM's U-Net (SongUNet, the published configuration), EDM's
# geometric augmentation at p = 0.12 with its labels fed to the net, RAdam, lr 1e-4, betas
# (0.9, 0.999), no weight decay, batch 1024, 800k steps, EMA 0.9999 in float64 every 16
# steps, TF32. Images as the authors load them: no flip besides the augmentation's own.
# micro_batch 128: fits one 80 GB GPU and equals the shard of the 8-GPU command, so one GPU
# and eight give the same run.
_CIFAR_TRAIN = dict(steps=800_000, batch_size=1024, micro_batch=128, lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0,
                    ema_decay=0.9999, ema_every=16, ema_dtype="float64", tf32=True, log_every=100,
                    sample_every=10_000, checkpoint_every=10_000, grid_samples=64)
_CIFAR = dict(
    model=dict(arch="unet"),
    data=dict(dataset="cifar10", root="data", hflip=False, augment_p=0.12),
    train=dict(_CIFAR_TRAIN, optimizer="radam"),
    soflow=SoFlowConfig.preset("cifar10").to_dict(),
)
# The same loss settings on DiT-B/2 (patch 2 on 32x32x3: 256 tokens), AdamW and random
# flips: the project's own variant, for which no published number exists.
_CIFAR_DIT = dict(
    model=dict(arch="dit", dit_size="DiT-B/2"),
    data=dict(dataset="cifar10", root="data", hflip=True),
    train=dict(_CIFAR_TRAIN, optimizer="adamw"),
    soflow=SoFlowConfig.preset("cifar10").to_dict(),
)

RUN_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    **{f"toy-{name}": _toy(name) for name in TOY_DATASETS},
    # 8x8 digits of scikit-learn (1,797 images, no download), class-conditional, tiny DiT:
    # trains live on a CPU in a few minutes (the project's own setting).
    "digits": dict(
        model=dict(arch="dit", dit_size="DiT-T/2"),
        data=dict(dataset="digits", conditional=True),
        train=dict(steps=1500, batch_size=128, lr=1e-3, ema_decay=0.999, ema_warmup=True,
                   log_every=50, sample_every=500, checkpoint_every=500, grid_samples=100),
        soflow=SoFlowConfig.preset("toy").to_dict(),
    ),
    "cifar10": _CIFAR,
    "cifar10-dit": _CIFAR_DIT,
    # Class-conditional CIFAR-10 on DiT-B/2 with guidance baked in: the CIFAR loss settings
    # plus the ImageNet guidance terms at scale 2 (the project's choice; the paper reports none).
    "cifar10-cond": {
        **_CIFAR_DIT,
        "data": {**_CIFAR_DIT["data"], "conditional": True},
        "soflow": {**_CIFAR_DIT["soflow"], "cfg_scale": 2.0, "mix_ratio": 0.25,
                   "cfg_drop_rate": 0.1, "cfg_decay_time": 0.8},
    },
    "imagenet256-b4": _imagenet("DiT-B/4", 400_000, 0),
    "imagenet256-b2": _imagenet("DiT-B/2", 1_201_094, 0),
    "imagenet256-m2": _imagenet("DiT-M/2", 1_201_094, 128),
    "imagenet256-l2": _imagenet("DiT-L/2", 1_201_094, 64),
    "imagenet256-xl2": _imagenet("DiT-XL/2", 1_201_094, 64),
}
PRESETS = RUN_PRESETS  # the name the book's appendix uses


def _preset_key(preset: str) -> str:
    """The run preset ``preset`` names (case-insensitive); a ValueError with the closest name,
    or pointing to ``SoFlowConfig.preset`` when it names a loss preset."""
    key = str(preset).strip().lower()
    if key in RUN_PRESETS:
        return key
    if key in LOSS_PRESETS:
        raise ValueError(f"{preset!r} is a loss preset (SoFlowConfig.preset({preset!r})), not a run preset; "
                         f"run presets are {list(RUN_PRESETS)}")
    raise ValueError(_values.unknown("preset", repr(preset), [repr(k) for k in RUN_PRESETS]))


def build_config(preset: str, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The preset ``preset`` with ``overrides`` such as {"train.lr": "2e-4"} applied and checked."""
    key = _preset_key(preset)
    values = copy.deepcopy(RUN_PRESETS[key])
    for dotted, value in (overrides or {}).items():
        section, _, name = dotted.partition(".")
        if section not in SECTIONS or not name:
            raise ValueError(f"unknown section {section!r} in {dotted}; sections are {list(SECTIONS)}")
        values.setdefault(section, {})[name] = value
    return RunConfig.from_dict({"preset": key, **values})


# ---------------------------------------------------------------- the authors' YAML files
# Their model_type and dataset_type values, and the preset that holds the rest of each recipe
# (optimiser, EMA, augmentation, precision): the keys of their files do not say those.
AUTHORS_MODEL_TYPES: dict[str, str] = {
    "UNet": "U-Net", "DiT-B-4": "DiT-B/4", "DiT-B-2": "DiT-B/2", "DiT-M-2": "DiT-M/2", "DiT-L-2": "DiT-L/2",
    "DiT-XL-2": "DiT-XL/2",
}
AUTHORS_DATASET_TYPES: dict[str, str] = {"Imagenet": "latents", "CIFAR10": "cifar10"}
_AUTHORS_PRESETS: dict[tuple[str, str], str] = {
    ("CIFAR10", "UNet"): "cifar10",
    **{("Imagenet", f"DiT-{size}"): f"imagenet256-{size.replace('-', '').lower()}"
       for size in ("B-4", "B-2", "M-2", "L-2", "XL-2")},
}
# Their keys that name one field here; the loss keys are SoFlowConfig's field names.
_AUTHORS_FIELDS: dict[str, str] = {
    "dataset_path": "data.root", "total_steps": "train.steps", "ema_decay_rate": "train.ema_decay",
    "learning_rate": "train.lr", "betas": "train.betas", "weight_decay": "train.weight_decay",
    "batch_size": "train.batch_size", "seed": "train.seed", "eval_NFE": "train.sample_nfe",
    "eval_demo_steps": "train.sample_every", "ckpt_saving_steps": "train.checkpoint_every",
    "logging_steps": "train.log_every",
}
# Their keys with no counterpart here: data loader workers (the data sets live in memory),
# the output folder (--run-dir), and FID evaluation during training (soflow-evaluate after it).
AUTHORS_IGNORED_KEYS: tuple[str, ...] = ("working_dir", "num_workers", "prefetch_factor", "eval_steps",
                                         "eval_batch_size")
_AUTHORS_OTHER = ("model_type", "dataset_type", "data_size", "eval_demo_shape")
assert set(_AUTHORS_FIELDS) | set(AUTHORS_IGNORED_KEYS) | set(_AUTHORS_OTHER) == set(AUTHORS_RUN_KEYS)


def authors_yaml_overrides(path: str | Path) -> tuple[str, dict[str, Any]]:
    """(preset, overrides) of one of the authors' YAML configs: ``build_config(preset,
    overrides)`` is that run. Every key of their published files is mapped or knowingly
    skipped (``AUTHORS_IGNORED_KEYS``); any other key, a missing key or a value that cannot be
    used is a ValueError naming the file and the key."""
    values = _values.read_yaml(path)
    try:
        return _authors_overrides(values, path)
    except ValueError as err:
        message = str(err)
        raise ValueError(message if message.startswith(f"{path}") else f"{path}: {message}") from None


def _authors_overrides(values: dict[str, Any], path: str | Path) -> tuple[str, dict[str, Any]]:
    loss_fields = [f.name for f in dataclasses.fields(SoFlowConfig)]
    known = list(AUTHORS_RUN_KEYS) + loss_fields
    for key in values:
        if key not in known:
            raise ValueError(f"{path}: " + _values.unknown("key", key, known))
    required = [k for k in known if k not in AUTHORS_IGNORED_KEYS]
    missing = [k for k in required if k not in values]
    if missing:
        raise ValueError(f"{path} lacks the keys {missing}, which the authors' configs set")

    def pick(key: str, table: Mapping[str, str]) -> str:
        value = values[key]
        match = {k.lower(): k for k in table}.get(str(value).strip().lower())
        if match is None:
            raise ValueError(f"{path}: " + _values.unknown(key, repr(value), [repr(k) for k in table]))
        return match

    model_type, dataset_type = pick("model_type", AUTHORS_MODEL_TYPES), pick("dataset_type", AUTHORS_DATASET_TYPES)
    preset = _AUTHORS_PRESETS.get((dataset_type, model_type))
    if preset is None:
        raise ValueError(f"{path}: model_type {model_type} with dataset_type {dataset_type} is not a setting of the "
                         f"authors' configs; use UNet with CIFAR10 (or the cifar10-dit preset) and DiT-* with Imagenet")
    if _values.coerce("data_size", values["data_size"], int) != 32:
        raise ValueError(f"{path}: data_size must be 32 (ImageNet 256x256 as 32x32 latents, CIFAR-10 32x32), "
                         f"got {values['data_size']!r}")
    shape = _values.coerce("eval_demo_shape", values["eval_demo_shape"], tuple[int, int])
    if min(shape) < 1:
        raise ValueError(f"{path}: eval_demo_shape must be two positive integers (rows, columns), got {list(shape)}")

    hints = {name: typing.get_type_hints(cls) for name, cls in SECTIONS.items()}
    overrides: dict[str, Any] = {"train.grid_samples": shape[0] * shape[1]}
    for key, dotted in _AUTHORS_FIELDS.items():
        section, _, name = dotted.partition(".")
        overrides[dotted] = _values.coerce(key, values[key], hints[section][name])
    loss = SoFlowConfig.from_dict({k: values[k] for k in loss_fields})
    overrides.update({f"soflow.{k}": v for k, v in loss.to_dict().items()})
    return preset, overrides


def _name_yaml_key(message: str) -> str:
    """Add the authors' key to a message that names the field it maps to."""
    for key, dotted in _AUTHORS_FIELDS.items():
        if dotted in message:
            return message.replace(dotted, f"{key} ({dotted})", 1)
    return message


def from_authors_yaml(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The run an authors' YAML config describes (imagenet.yaml, cifar.yaml as published),
    with ``overrides`` such as {"train.steps": 2} applied on top."""
    preset, mapped = authors_yaml_overrides(path)
    try:
        build_config(preset, mapped)
    except ValueError as err:  # a value of the file that the checks refuse
        raise ValueError(f"{path}: {_name_yaml_key(str(err))}") from None
    return build_config(preset, {**mapped, **(overrides or {})})

