"""SoFlow loss configuration.

Field names equal the keys of the authors' published YAML configs, so those files load as
they are (``SoFlowConfig.from_yaml``). Option values are checked and normalised when the
config is built; spellings such as "Linear", "Euler" or "Exponent" are accepted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import _checks
from .coefficients import COEFFICIENTS, CoefficientType
from .paths import PATHS, NoisingType
from .time_sampling import L_SCHEDULES, LSchedule

# Other spellings seen in configs, mapped to the canonical option names.
_ALIASES = {"constant": "const", "exp": "exponent", "exponential": "exponent", "cos": "cosine"}


def _option(name: str, value: str, table: Mapping) -> str:
    key = str(value).strip().lower()
    return _checks.choice(name, _ALIASES.get(key, key), table)


@dataclass
class SoFlowConfig:
    """Hyper-parameters of the SoFlow objective (defaults: the published ImageNet-256 setting).

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
        self.noising_type = _option("noising_type", self.noising_type, PATHS)
        self.coefficient_type = _option("coefficient_type", self.coefficient_type, COEFFICIENTS)
        self.l_schedule = _option("l_schedule", self.l_schedule, L_SCHEDULES)
        for name in ("time_mean", "time_std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"{name} must hold 3 numbers (FM t, SCM s, SCM t), got {value}")
            setattr(self, name, value)
        if min(self.time_std) <= 0:
            raise ValueError(f"time_std must be positive, got {self.time_std}")
        _in_range("velocity_loss_ratio", self.velocity_loss_ratio, 0.0, 1.0)
        _in_range("mix_ratio", self.mix_ratio, 0.0, 1.0)
        _in_range("cfg_drop_rate", self.cfg_drop_rate, 0.0, 1.0)
        _in_range("cfg_decay_time", self.cfg_decay_time, 0.0, 1.0, high_open=True)
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
        """Build from a mapping, nested or flat; keys that are not SoFlow fields are ignored.

        This reads the authors' YAML configs, which hold model, data and optimiser settings
        beside the loss fields.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        found: dict[str, Any] = {}

        def visit(node: Any) -> None:
            if isinstance(node, Mapping):
                for key, value in node.items():
                    if key in names and not isinstance(value, Mapping):
                        found.setdefault(key, value)
                    else:
                        visit(value)

        visit(values)
        return cls(**found)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SoFlowConfig":
        import yaml

        with open(path) as fh:
            return cls.from_dict(yaml.safe_load(fh) or {})

    @classmethod
    def preset(cls, name: str) -> "SoFlowConfig":
        """A published or project setting by name; see ``PRESETS``."""
        key = _checks.choice("preset", name, PRESETS)
        return cls(**PRESETS[key])


def _in_range(name: str, value: float, low: float, high: float, *, low_open=False, high_open=False):
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (ok_low and ok_high):
        lb, hb = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {lb}{low}, {high}{hb}, got {value}")


PRESETS: dict[str, dict[str, Any]] = {
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
        cfg_scale=1.0, cfg_drop_rate=0.0,
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
