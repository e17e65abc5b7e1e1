"""Run configs: presets, field-by-field overrides, Literal options, JSON round trip."""

import json
import typing

import pytest

from soflow_mini import SoFlowConfig
from soflow_mini.nets import DIT_SIZES
from soflow_mini.train import PRESETS, RUN_PRESETS, RunConfig, build_config
from soflow_mini.train.config import SECTIONS, coerce


def test_every_preset_builds_and_survives_json():
    for name in PRESETS:
        config = build_config(name)
        again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config, name


def test_every_literal_choice_resolves():
    """Each option the command line offers for a Literal field builds a config."""
    count = 0
    for section, cls in SECTIONS.items():
        for field, hint in typing.get_type_hints(cls).items():
            if typing.get_origin(hint) is typing.Literal:
                for choice in typing.get_args(hint):
                    config = build_config("toy-moons", {f"{section}.{field}": choice})
                    assert getattr(getattr(config, section), field) == choice
                    count += 1
    assert count >= 12
    for size in DIT_SIZES:
        assert build_config("digits", {"model.dit_size": size}).model.dit_size == size


def test_published_settings():
    cifar = build_config("cifar10")  # the paper's CIFAR-10 recipe
    assert cifar.soflow == SoFlowConfig.preset("cifar10")
    train_ = cifar.train
    assert (train_.lr, train_.betas, train_.weight_decay, train_.batch_size, train_.steps) == (
        1e-4, (0.9, 0.999), 0.0, 1024, 800_000)
    assert (train_.ema_decay, train_.ema_every, train_.ema_dtype) == (0.9999, 16, "float64")
    assert (train_.optimizer, train_.tf32, cifar.model.arch) == ("radam", True, "unet")
    assert (cifar.data.augment_p, cifar.data.hflip, cifar.data.conditional) == (0.12, False, False)
    dit = build_config("cifar10-dit")
    assert (dit.model.arch, dit.model.dit_size, dit.train.optimizer, dit.data.augment_p) == ("dit", "DiT-B/2", "adamw", 0)
    assert dit.soflow == cifar.soflow and dit.train.ema_every == 16
    cond = build_config("cifar10-cond")
    assert cond.soflow.uses_guidance and cond.data.conditional and cond.model.dit_size == "DiT-B/2"
    sizes = {"b4": "DiT-B/4", "b2": "DiT-B/2", "m2": "DiT-M/2", "l2": "DiT-L/2", "xl2": "DiT-XL/2"}
    for suffix, size in sizes.items():
        config = build_config(f"imagenet256-{suffix}")
        assert config.soflow == SoFlowConfig.preset("imagenet256")
        assert (config.train.lr, config.train.betas, config.train.batch_size) == (1e-4, (0.9, 0.99), 256)
        assert (config.train.optimizer, config.train.tf32) == ("adamw", True)
        assert config.model.dit_size == size and config.data.dataset == "latents" and config.data.conditional
    for name in RUN_PRESETS:  # CPU presets leave TF32 off
        if name.startswith("toy-") or name == "digits":
            assert not build_config(name).train.tf32


def test_overrides_convert_types():
    config = build_config("toy-moons", {
        "train.lr": "2e-4", "train.steps": "1e3", "train.checkpoint_every": "10_000", "train.betas": "0.8,0.9",
        "train.bf16": "true",
        "model.hidden_size": "64", "soflow.time_mean": "0,1,2", "soflow.l_schedule": "Cosine",
    })
    assert config.train.lr == 2e-4 and config.train.steps == 1000 and config.train.betas == (0.8, 0.9)
    assert config.train.checkpoint_every == 10_000
    assert build_config("toy-moons", {"train.seed": "12345678901234567"}).train.seed == 12345678901234567
    assert config.train.bf16 is True and config.model.hidden_size == 64
    assert config.soflow.time_mean == (0.0, 1.0, 2.0) and config.soflow.l_schedule == "cosine"
    assert build_config("toy-moons", {"model.hidden_size": "none"}).model.hidden_size is None


@pytest.mark.parametrize("override, message", [
    ({"train.lr": "abc"}, "train.lr expects a number"),
    ({"train.steps": "1.5"}, "train.steps expects an integer"),
    ({"train.steps": "inf"}, "train.steps expects an integer"),
    ({"train.lr": "nan"}, "train.lr expects a number"),
    ({"train.bf16": "maybe"}, "train.bf16 expects true or false"),
    ({"train.betas": "0.9"}, "train.betas expects 2"),
    ({"train.log_format": "xml"}, "train.log_format must be one of"),
    ({"train.lrr": "1"}, "did you mean train.lr"),
    ({"modle.arch": "dit"}, "unknown section 'modle'"),
    ({"model.dit_size": "DiT-Z/9"}, "unknown model.dit_size"),
    ({"data.toy": "swissroll"}, "unknown data.toy"),
    ({"train.steps": "0"}, "train.steps must be > 0"),
    ({"train.device": "gpu0"}, "train.device must be 'auto' or a device"),
    ({"soflow.eps": "0"}, "eps must be > 0"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_config("toy-moons", override)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        build_config("nope")
    with pytest.raises(ValueError, match="unknown preset 'cifar-10'; did you mean 'cifar10'"):
        build_config("cifar-10")
    with pytest.raises(ValueError, match=r"'toy' is a loss preset \(SoFlowConfig.preset\('toy'\)\), not a run preset"):
        build_config("toy")
    with pytest.raises(ValueError, match=r"'toy-moons' is a run preset .* not a loss preset; loss presets are"):
        SoFlowConfig.preset("toy-moons")
    assert PRESETS is RUN_PRESETS  # the older name, which the book's appendix uses


def test_section_messages_name_the_field_once():
    with pytest.raises(ValueError, match=r"^unknown model.dit_size 'DiT-Z/9'"):
        build_config("digits", {"model.dit_size": "DiT-Z/9"})
    with pytest.raises(ValueError, match=r"^soflow: eps must be > 0"):
        build_config("digits", {"soflow.eps": "0"})


def test_coerce_rejects_bool_for_number():
    with pytest.raises(ValueError, match="x expects an integer"):
        coerce("x", True, int)
