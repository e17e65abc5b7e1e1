"""SoFlow loss configuration.

Field names equal the keys of the authors' published YAML configs, so those files load as
they are (``SoFlowConfig.from_yaml`` reads their loss settings; ``soflow_mini.train.RunConfig.
from_authors_yaml`` the whole run). Values are converted and checked when the config is
built; spellings such as "Linear", "Euler", "Exponent" or "Triangular" are accepted.
Named settings are in ``LOSS_PRESETS`` (``SoFlowConfig.preset(name)``); the presets of whole
training runs are ``soflow_mini.train.RUN_PRESETS``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from . import _checks, _values
from .coefficients import COEFFICIENTS, CoefficientType
from .paths import PATHS, NoisingType
from .time_sampling import L_SCHEDULES, LSchedule

# Other spellings seen in configs, mapped to the canonical option names.
_ALIASES = {"constant": "const", "exp": "exponent", "exponential": "exponent", "cos": "cosine",
            "triangular": "trig"}  # the authors' YAML comments call the trig options "Triangular"

# The other keys of the authors' two published YAML files (model, data, optimiser, logging):
# SoFlowConfig.from_yaml accepts and skips them; RunConfig.from_authors_yaml maps them.
AUTHORS_RUN_KEYS: tuple[str, ...] = (
    "working_dir", "model_type", "dataset_type", "data_size", "dataset_path", "total_steps", "ema_decay_rate",
    "learning_rate", "betas", "weight_decay", "batch_size", "num_workers", "prefetch_factor", "eval_steps",
    "eval_batch_size", "eval_NFE", "eval_demo_steps", "eval_demo_shape", "ckpt_saving_steps", "logging_steps", "seed",
)


def _option(name: str, value: str, table: Mapping) -> str:
    key = str(value).strip().lower()
    return _checks.choice(name, _ALIASES.get(key, key), table)


@dataclass
class SoFlowConfig:
    """Hyper-parameters of the SoFlow objective.

    The defaults are the published ImageNet-256 loss setting with guidance off (cfg_scale 1.0;
    the published runs train with cfg_scale 3.0, which ``SoFlowConfig.preset("imagenet256")``
    holds). Strings are converted (``eps="1e-2"``), so YAML 1.1 values load as written.

    Example::

        config = SoFlowConfig.preset("cifar10")          # the published CIFAR-10 setting
        config = SoFlowConfig.from_yaml("imagenet.yaml")  # the authors' file, as published
        config = SoFlowConfig(velocity_loss_ratio=0.5, l_schedule="Cosine")

    velocity_loss_ratio: fraction of the batch trained with the flow-matching term.
    p, eps: adaptive weight 1 / (mse + eps)^p.
    time_mean, time_std: logit-normal (mean, std) for (FM t, SCM s, SCM t).
    cfg_scale, mix_ratio, cfg_drop_rate, cfg_decay_time: guidance baked into training (active only with labels and cfg_scale > 1).
    l_schedule, l_init_ratio, l_end_ratio: intermediate-time schedule r(k, K).
    noising_type: path ("linear", "trig"); coefficient_type: f parameterization ("euler", "trig").
    """

    velocity_loss_ratio: float = 0.75
    p: float = 1.0
    eps: float = 0.01
    time_mean: tuple[float, float, float] = (-0.2, -1.0, 0.2)
    time_std: tuple[float, float, float] = (1.0, 0.8, 0.8)
    cfg_scale: float = 1.0
    mix_ratio: float = 0.25
    cfg_drop_rate: float = 0.1
    cfg_decay_time: float = 0.8
    l_schedule: LSchedule = "exponent"
    l_init_ratio: float = 0.1
    l_end_ratio: float = 0.002
    noising_type: NoisingType = "linear"
    coefficient_type: CoefficientType = "euler"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # numbers written as strings ("1e-2" in YAML 1.1)
            hint = _HINTS[f.name]
            if typing.get_origin(hint) is not Literal:
                setattr(self, f.name, _values.coerce(f.name, getattr(self, f.name), hint))
        self.noising_type = _option("noising_type", self.noising_type, PATHS)
        self.coefficient_type = _option("coefficient_type", self.coefficient_type, COEFFICIENTS)
        self.l_schedule = _option("l_schedule", self.l_schedule, L_SCHEDULES)
        if min(self.time_std) <= 0:
            raise ValueError(f"time_std must be positive, got {self.time_std}")
        _in_range("velocity_loss_ratio", self.velocity_loss_ratio, 0.0, 1.0)
        _in_range("mix_ratio", self.mix_ratio, 0.0, 1.0)
        _in_range("cfg_drop_rate", self.cfg_drop_rate, 0.0, 1.0)
        _in_range("cfg_decay_time", self.cfg_decay_time, 0.0, 1.0)  # 1: no decay (the authors' cifar.yaml)
        _in_range("l_init_ratio", self.l_init_ratio, 0.0, 1.0, low_open=True)
        _in_range("l_end_ratio", self.l_end_ratio, 0.0, 1.0, low_open=True)
        if self.p < 0:
            raise ValueError(f"p must be >= 0 (adaptive-weight exponent), got {self.p}")
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale}")
        if self.uses_guidance and self.cfg_drop_rate == 0:
            raise ValueError(
                f"cfg_scale {self.cfg_scale} > 1 needs cfg_drop_rate > 0: the guided target uses the "
                "unconditional velocity, which only label dropout trains"
            )

    @property
    def uses_guidance(self) -> bool:
        return self.cfg_scale > 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SoFlowConfig":
        """Build from a flat mapping of field names to values (strings are converted).

        The other keys of the authors' YAML files (``AUTHORS_RUN_KEYS``: model, data and
        optimiser settings) are accepted and skipped; any other key is an error that names it.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"expected a mapping of SoFlowConfig fields to values, got {type(values).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key in AUTHORS_RUN_KEYS:
                continue
            if key not in names:
                raise ValueError(_values.unknown("SoFlowConfig field", str(key), names + list(AUTHORS_RUN_KEYS)))
            if isinstance(value, Mapping):
                raise ValueError(f"{key} must be a value, got a mapping (the file must be flat, as the authors' are)")
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SoFlowConfig":
        """The loss settings of a YAML file such as the authors' imagenet.yaml or cifar.yaml.

        Errors name the file and the key: a key that is neither a field nor one of the
        authors' other keys (with the closest name), a value that does not fit, an empty file.
        """
        values = _values.read_yaml(path)
        try:
            return cls.from_dict(values)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    @classmethod
    def preset(cls, name: str) -> "SoFlowConfig":
        """A published or project loss setting by name; see ``LOSS_PRESETS``."""
        key = str(name).strip().lower()
        if key not in LOSS_PRESETS:
            raise ValueError(_unknown_preset(str(name)))
        return cls(**LOSS_PRESETS[key])


def _unknown_preset(name: str) -> str:
    from .train.config import RUN_PRESETS  # a run preset given where a loss preset is expected

    if name.strip().lower() in RUN_PRESETS:
        return (f"{name!r} is a run preset (soflow_mini.train.build_config({name!r}), soflow-train {name}), "
                f"not a loss preset; loss presets are {list(LOSS_PRESETS)}")
    return _values.unknown("loss preset", repr(name), [repr(k) for k in LOSS_PRESETS])


def _in_range(name: str, value: float, low: float, high: float, *, low_open=False, high_open=False):
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (ok_low and ok_high):
        lb, hb = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {lb}{low}, {high}{hb}, got {value}")


LOSS_PRESETS: dict[str, dict[str, Any]] = {
    # ImageNet 256 (latent), class-conditional, guidance baked in.
    "imagenet256": dict(
        velocity_loss_ratio=0.75, p=1.0, eps=0.01,
        time_mean=(-0.2, -1.0, 0.2), time_std=(1.0, 0.8, 0.8),
        cfg_scale=3.0, mix_ratio=0.25, cfg_drop_rate=0.1, cfg_decay_time=0.8,
        l_schedule="exponent", l_init_ratio=0.1, l_end_ratio=0.002,
    ),
    # CIFAR-10, unconditional: consistency term only.
    "cifar10": dict(
        velocity_loss_ratio=0.0, p=0.75, eps=1e-3,
        time_mean=(-0.9, -4.0, -0.9), time_std=(1.6, 1.6, 1.6),
        cfg_scale=1.0, mix_ratio=1.0, cfg_drop_rate=0.0, cfg_decay_time=1.0,  # as in the authors' cifar.yaml
        l_schedule="exponent", l_init_ratio=1.0, l_end_ratio=0.0003125,
    ),
    # 2D toys on CPU (a few thousand steps): the project's own setting. Like the CIFAR-10
    # recipe it draws s close to 0 (the one-step jump) and uses p = 0.75; measured on the
    # checkerboard it beat both published settings at 2,000 steps (see benchmarks/).
    "toy": dict(
        velocity_loss_ratio=0.75, p=0.75, eps=1e-3,
        time_mean=(0.0, -4.0, 0.0), time_std=(1.6, 1.6, 1.6),
        cfg_scale=1.0, cfg_drop_rate=0.0,
        l_schedule="exponent", l_init_ratio=0.5, l_end_ratio=0.01,
    ),
}

_HINTS = typing.get_type_hints(SoFlowConfig)
