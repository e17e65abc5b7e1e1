"""From a RunConfig to a trained model, and from a checkpoint back to a model.

This is the one place that knows which network and which method a config names; the
trainer itself stays generic.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ..baselines import FlowMatching, MeanFlow
from ..config import SoFlowConfig
from ..ema import EMA
from ..nets import DIT_SIZES, DiT, SongUNet, ToyMLP
from ..nets import load_official as load_official_network
from ..soflow import SoFlow
from .checkpoint import archive_run, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import DataConfig, ModelConfig, RunConfig
from .data import DataSpec, build_data
from .distributed import barrier, init_distributed
from .trainer import Trainer, TrainResult

# method name -> (class, name of the sample() argument that sets the number of steps)
METHODS: dict[str, tuple[type[nn.Module], str]] = {
    "soflow": (SoFlow, "nfe"),
    "flow_matching": (FlowMatching, "steps"),
    "meanflow": (MeanFlow, "nfe"),
}


def build_net(config: ModelConfig, spec: DataSpec) -> nn.Module:
    """The network a ModelConfig names, sized for samples of ``spec``."""
    if config.arch == "mlp":
        if len(spec.shape) != 1:
            raise ValueError(f"model.arch 'mlp' needs vector data; this data set has samples of shape {spec.shape}")
        return ToyMLP(dim=spec.shape[0], width=config.mlp_width, depth=config.mlp_depth, num_classes=spec.num_classes)
    if len(spec.shape) != 3:
        raise ValueError(f"model.arch {config.arch!r} needs images (C, H, W); "
                         f"this data set has samples of shape {spec.shape}")
    if config.arch == "unet":
        return _build_unet(config, spec)
    size = DIT_SIZES[config.dit_size]
    pick = lambda name: getattr(config, name) if getattr(config, name) is not None else getattr(size, name)  # noqa: E731
    C, H, W = spec.shape
    return DiT(
        input_size=(H, W), in_channels=C, num_classes=spec.num_classes, patch_size=pick("patch_size"),
        hidden_size=pick("hidden_size"), depth=pick("depth"), num_heads=pick("num_heads"),
    )


def _build_unet(config: ModelConfig, spec: DataSpec) -> nn.Module:
    """EDM's SongUNet in the configuration of the paper's CIFAR-10 runs (its constructor's
    defaults, 6 augmentation labels included), sized for ``spec``; unet_channels and
    unet_blocks shrink it."""
    try:
        from ..nets.unet import SongUNet
    except ImportError:
        raise ImportError("model.arch 'unet' needs soflow_mini.nets.unet (SongUNet), "
                          "which this installation lacks") from None
    C, H, W = spec.shape
    if H != W:
        raise ValueError(f"model.arch 'unet' needs square images, got samples of shape {spec.shape}")
    if spec.num_classes:
        raise ValueError("model.arch 'unet' is unconditional (the network of the paper's CIFAR-10 runs); "
                         "set data.conditional false, or use model.arch dit for class labels")
    sizes = {"model_channels": config.unet_channels, "num_blocks": config.unet_blocks}
    return SongUNet(img_resolution=H, in_channels=C, out_channels=C, **{k: v for k, v in sizes.items() if v is not None})


def build_augment(config: DataConfig) -> Callable[..., tuple[Tensor, Tensor]] | None:
    """EDM's geometric augmentation at probability data.augment_p, or None when it is 0.

    The result is called as ``augment(images, generator=g) -> (images, labels (B, 6))``.
    """
    if config.augment_p <= 0:
        return None
    try:
        from ..data.augment import GeometricAugment
    except ImportError:
        raise ImportError("data.augment_p > 0 needs soflow_mini.data.augment (EDM's augmentation), "
                          "which this installation lacks") from None
    return GeometricAugment(p=config.augment_p)


def build_model(config: RunConfig, spec: DataSpec) -> nn.Module:
    """SoFlow (or a baseline, by train.method) around the configured network."""
    cls, _ = METHODS[config.train.method]
    if config.data.augment_p > 0 and config.model.arch != "unet":
        raise ValueError(f"data.augment_p {config.data.augment_p} needs model.arch 'unet': the augmentation labels "
                         f"condition the U-Net, and model.arch {config.model.arch!r} takes none")
    return cls(build_net(config.model, spec), getattr(config, config.train.method))


def sample_kwargs(method: str, nfe: int) -> dict[str, int]:
    """Keyword arguments of ``model.sample`` for ``nfe`` steps of the given method."""
    return {METHODS[method][1]: nfe}


def train(config: RunConfig, run_dir: str | Path, *, stop_at: int | None = None, restart: bool = False) -> TrainResult:
    """Train (or resume) the run in ``run_dir``; under torchrun every process calls this.

    ``restart``: move the folder's checkpoints, logs, grids and config into
    ``run_dir/previous-N`` first and start from step 0 (nothing is deleted). config.json is
    written once the run has started, so a start that fails leaves no trace.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} is an existing file; choose another --run-dir")
    info, device = init_distributed(config.train.device)
    data = build_data(config.data, seed=config.train.seed)
    torch.manual_seed(config.train.seed)  # the initial weights (the same in every process)
    model = build_model(config, data.spec)
    if config.train.compile:
        model.net.compile()  # in place: parameter names (and checkpoints) stay the same
    if restart:
        if info.is_main:
            moved = archive_run(run_dir)
            if moved is not None:
                print(f"restarting {run_dir} from step 0; the previous files are in {moved}", file=sys.stderr)
        barrier()
    from ..evaluation.generate import grid_writer

    trainer = Trainer(
        model, data, config.train, run_dir, device=device, dist_info=info, augment=build_augment(config.data),
        extra_state={"config": config.to_dict(), "data_spec": data.spec.to_dict()},
        sample_kwargs=sample_kwargs(config.train.method, config.train.sample_nfe),
        write_grid=grid_writer(data.spec) if info.is_main else None,
    )
    if info.is_main:
        _write_config(run_dir, config)
    return trainer.fit(stop_at)


def _write_config(run_dir: Path, config: RunConfig) -> None:
    """Save config.json; warn about the fields that differ from a previous run in this folder
    (fields the previous run did not have yet are not differences)."""
    path = run_dir / "config.json"
    new = json.loads(json.dumps(config.to_dict()))
    if path.exists():
        old = json.loads(path.read_text())
        changed = [f"{s}.{k}" for s in new if isinstance(new[s], dict) and isinstance(old.get(s), dict)
                   for k in new[s] if k in old[s] and old[s][k] != new[s][k]]
        if changed:
            warnings.warn(f"{run_dir} was started with other values of {', '.join(changed)}; using the new ones",
                          stacklevel=3)
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(new, indent=2) + "\n")


def load_model(path: str | Path, *, ema: bool = True) -> tuple[nn.Module, DataSpec, RunConfig, int]:
    """Rebuild a trained model from a checkpoint file or a run folder (its newest checkpoint).

    Returns (model on the CPU in eval mode, data spec, run config, step); ``ema`` selects the
    averaged weights.
    """
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {path / 'checkpoints'}")
        path, state = found
    else:
        state = load_checkpoint(path)
    if "model" in state and ("config" not in state or "data_spec" not in state):
        raise ValueError(
            f"{path} holds weights but no run config (a Trainer around a custom network?): only runs of "
            "soflow_mini.train presets are rebuilt from a checkpoint; build your model in Python and call "
            "model.load_state_dict(load_checkpoint(path)['model'])"
        )
    for key in ("config", "data_spec", "model"):
        if key not in state:
            raise ValueError(f"{path} lacks '{key}': not a checkpoint of soflow_mini.train")
    config = RunConfig.from_dict(state["config"])
    spec = DataSpec.from_dict(state["data_spec"])
    model = build_model(config, spec)
    model.load_state_dict(state["model"])  # cast to the model's dtypes (an export may hold float16)
    if state.get("weights") == "ema":  # an export: "model" already holds the averaged weights
        if not ema:
            raise ValueError(f"{path} is an export of the EMA weights only; it holds no online weights")
    elif ema:
        averaged = EMA(model)
        averaged.load_state_dict(state["ema"])
        averaged.copy_to(model)
    return model.eval(), spec, config, int(state["step"])


EXPORT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_model(source: str | Path, out: str | Path, *, dtype: str = "float32") -> Path:
    """Write the EMA weights of a run (its newest checkpoint) or of a checkpoint file to ``out``,
    in ``dtype``, with the run config and data spec: no optimizer, online weights or random
    states. ``load_model(out)`` rebuilds the model (in float32)."""
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype must be one of {list(EXPORT_DTYPES)}, got {dtype!r}")
    source = Path(source)
    if source.is_dir():
        found = latest_checkpoint(source)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {source / 'checkpoints'}")
        source, state = found
    else:
        state = load_checkpoint(source)
    for key in ("config", "data_spec", "model", "ema"):
        if key not in state:
            raise ValueError(f"{source} lacks '{key}': not a training checkpoint of soflow_mini.train")
    shadow = state["ema"]["shadow"]
    weights = {}
    for name, value in state["model"].items():  # parameters from the EMA, buffers as they are
        value = shadow.get(name, value)
        weights[name] = value.to(EXPORT_DTYPES[dtype]) if value.is_floating_point() else value
    exported = {"step": int(state["step"]), "weights": "ema", "model": weights,
                "config": state["config"], "data_spec": state["data_spec"]}
    return save_checkpoint(exported, out)


def load_official(path: str | Path, *, vae: str | None = None, ema: bool = True) -> tuple[nn.Module, DataSpec]:
    """An authors' SoFlow checkpoint as a SoFlow model (eval mode) and the spec of its samples:
    their U-Net gives CIFAR-10 images (3, 32, 32), unconditional; their DiTs give ImageNet-256
    latents (4, 32, 32), decoded by the SD-VAE ``vae``. ``ema`` picks their EMA weights."""
    from ..data.latents import DEFAULT_VAE, LATENT_SCALE

    net = load_official_network(path, ema=ema)
    if isinstance(net, SongUNet):
        R = net.img_resolution
        spec = DataSpec("image", (net.in_channels, R, R), 0)
        return SoFlow(net, SoFlowConfig.preset("cifar10")).eval(), spec
    spec = DataSpec("latent", (net.in_channels, *net.input_size), net.num_classes,
                    vae=vae or DEFAULT_VAE, latent_scale=LATENT_SCALE)
    return SoFlow(net, SoFlowConfig.preset("imagenet256")).eval(), spec
