"""Load the networks of the authors' SoFlow checkpoints: their DiTs (ImageNet-256) and their
U-Net (CIFAR-10).

Their training code saves ``{'model', 'ema_model', 'optimizer', 'finished_steps',
'finished_epochs'}``, where ``model`` (online) and ``ema_model`` (EMA) are state dicts of
their whole ``Soflow`` module: every network key starts with ``network.``. The architecture is
read off the keys (``x_embedder.*``: DiT, ``map_layer0.*`` and ``enc.*``: U-Net) and its
sizes off the tensor shapes; the number of DiT heads, which shapes do not reveal, comes from
the size registry or the ``num_heads`` argument.

DiT keys follow the original DiT code: ``s_embedder`` (the embedder of the gap t - s, here
``gap_embedder``) and a stored ``pos_embed`` (a fixed sin-cos table, rebuilt here). U-Net keys
are EDM's SongUNet names, which ``SongUNet`` shares.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Mapping

import torch
from torch import Tensor, nn

from .dit import DIT_SIZES, DiT
from .unet import SongUNet, UNetConfig

NETWORK_PREFIX = "network."  # the authors' Soflow module holds the network as `network`
_RENAMES = {"s_embedder.": "gap_embedder."}
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / torch.compile wrappers around their module
CHECKPOINT_KEYS = ("model", "ema_model", "optimizer", "finished_steps", "finished_epochs")
Architecture = Literal["dit", "unet"]


# ---------------------------------------------------------------- reading the file
def _read(checkpoint: str | Path | Mapping) -> Mapping:
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"checkpoint must be a dict (a path to one), got {type(checkpoint).__name__}")
    return checkpoint


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def official_state_dict(checkpoint: str | Path | Mapping, *, ema: bool = True) -> dict[str, Tensor]:
    """The network weights of an authors' checkpoint, ``network.`` removed (keys still theirs).

    ``checkpoint``: their training file (a path or the loaded dict with ``model`` and
    ``ema_model``), or one of those state dicts on its own. ``ema`` picks ``ema_model``.
    """
    checkpoint = _read(checkpoint)
    if "model" in checkpoint or "ema_model" in checkpoint:
        entry = "ema_model" if ema else "model"
        if entry not in checkpoint:
            other = "ema=False for the online weights 'model'" if ema else "ema=True for 'ema_model'"
            keys = sorted(map(str, checkpoint))
            raise ValueError(f"the checkpoint has no '{entry}' entry (keys {keys}); pass {other}")
        state = checkpoint[entry]
        if not isinstance(state, Mapping):
            raise ValueError(f"checkpoint['{entry}'] must be a state dict, got {type(state).__name__}")
    else:
        state = checkpoint
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        key = _strip_wrappers(str(key))
        if key.startswith(NETWORK_PREFIX) and isinstance(value, Tensor):
            out[key[len(NETWORK_PREFIX):]] = value
    if not out:
        raise ValueError(
            "not an authors' SoFlow checkpoint: expected a dict with keys "
            f"{list(CHECKPOINT_KEYS)} whose 'model' / 'ema_model' hold tensors named 'network.*', "
            f"got keys {list(state)[:8]}"
        )
    return out


def detect_architecture(state_dict: Mapping[str, Tensor]) -> Architecture:
    """"dit" or "unet" from the keys of a network state dict (``network.`` removed)."""
    if "x_embedder.proj.weight" in state_dict:
        return "dit"
    if "map_layer0.weight" in state_dict and any(k.startswith("enc.") for k in state_dict):
        return "unet"
    raise ValueError(
        "unknown network: expected DiT keys (x_embedder.proj.weight, ...) or U-Net keys "
        f"(map_layer0.weight, enc.*), got {list(state_dict)[:8]}"
    )


def _load_strict(net: nn.Module, state_dict: Mapping[str, Tensor], what: str) -> None:
    missing = sorted(set(net.state_dict()) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(net.state_dict()))
    if missing or unexpected:
        raise ValueError(f"the checkpoint's {what} does not match: missing {missing[:6]}, unexpected {unexpected[:6]}")
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:  # shapes that the inferred architecture does not explain
        raise ValueError(f"the checkpoint's {what} does not match: {err}") from None


# ---------------------------------------------------------------- DiT
def convert_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename the keys of an authors' DiT state dict (``network.`` optional) to ``DiT``'s names;
    the stored ``pos_embed`` is dropped (the model rebuilds it)."""
    out = {}
    for key, value in state_dict.items():
        key = _strip_wrappers(key)
        if key.startswith(NETWORK_PREFIX):
            key = key[len(NETWORK_PREFIX):]
        for old, new in _RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
        if key == "pos_embed":
            continue
        out[key] = value
    return out


def _infer_dit_kwargs(sd: Mapping[str, Tensor], num_heads: int | None, input_size) -> dict:
    proj = sd["x_embedder.proj.weight"]  # (D, C, p, p)
    hidden, in_channels, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    out_features = sd["final_layer.linear.weight"].shape[0]
    if out_features != patch * patch * in_channels:
        raise ValueError(
            f"final layer predicts {out_features // (patch * patch)} channels for {in_channels} inputs; "
            "SoFlow DiTs have no learned sigma"
        )
    table = sd.get("y_embedder.embedding_table.weight")  # (num_classes + 1, D): the last row is the null class
    num_classes = 0 if table is None else table.shape[0] - 1
    mlp_ratio = sd["blocks.0.mlp.fc1.weight"].shape[0] / hidden
    if num_heads is None:
        matches = [s for s in DIT_SIZES.values() if (s.patch_size, s.hidden_size, s.depth) == (patch, hidden, depth)]
        if not matches:
            raise ValueError(
                f"no registered DiT size has patch {patch}, width {hidden}, depth {depth}; pass num_heads"
            )
        num_heads = matches[0].num_heads
    return dict(
        input_size=input_size, in_channels=in_channels, num_classes=num_classes, patch_size=patch,
        hidden_size=hidden, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
    )


def _build_dit(raw: Mapping[str, Tensor], input_size, num_heads: int | None) -> DiT:
    sd = convert_official_state_dict(raw)
    if input_size is None:
        pos = raw.get("pos_embed")
        if pos is None:
            raise ValueError("the checkpoint stores no pos_embed: pass input_size")
        patch = sd["x_embedder.proj.weight"].shape[2]
        side = int(round(pos.shape[-2] ** 0.5))
        if side * side != pos.shape[-2]:
            raise ValueError(f"pos_embed with {pos.shape[-2]} tokens is not a square grid: pass input_size")
        input_size = side * patch
    model = DiT(**_infer_dit_kwargs(sd, num_heads, input_size))
    _load_strict(model, sd, "DiT")
    return model


# ---------------------------------------------------------------- U-Net
def infer_unet_kwargs(sd: Mapping[str, Tensor]) -> dict:
    """SongUNet constructor arguments (all but dropout) from the shapes of its state dict."""
    convs = [re.fullmatch(r"enc\.(\d+)x\1_conv\.weight", k) for k in sd]
    convs = [m for m in convs if m]
    if len(convs) != 1:
        raise ValueError("a U-Net state dict needs exactly one input conv enc.RxR_conv.weight")
    R = int(convs[0].group(1))
    first = sd[convs[0].group(0)]  # (model_channels, in_channels, 3, 3)
    model_channels, in_channels = first.shape[0], first.shape[1]
    blocks: dict[int, list[int]] = {}  # resolution -> encoder block indices
    for k in sd:
        m = re.fullmatch(r"enc\.(\d+)x\1_block(\d+)\.norm0\.weight", k)
        if m:
            blocks.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    resolutions = sorted(blocks, reverse=True)
    if not resolutions or resolutions[0] != R:
        raise ValueError(f"a U-Net state dict needs encoder blocks enc.{R}x{R}_block*")
    num_blocks = len(blocks[R])
    channel_mult, attn = [], []
    for res in resolutions:
        out = sd[f"enc.{res}x{res}_block{num_blocks - 1}.conv1.weight"].shape[0]
        channel_mult.append(out // model_channels)
        if f"enc.{res}x{res}_block0.qkv.weight" in sd:
            attn.append(res)
    layer0 = sd["map_layer0.weight"]  # (emb, 2 * noise)
    aug = sd.get("map_augment.weight")  # (2 * noise, augment_dim)
    filters = [v for k, v in sd.items() if k.endswith("resample_filter")]
    taps = filters[0].shape[-1] if filters else 4
    if taps not in (2, 4):
        raise ValueError(f"resample filters of {taps} taps are not supported (EDM uses 2 or 4)")
    return dict(
        img_resolution=R, in_channels=in_channels, out_channels=sd[f"dec.{R}x{R}_aux_conv.weight"].shape[0],
        augment_dim=0 if aug is None else aug.shape[1], model_channels=model_channels,
        channel_mult=tuple(channel_mult), channel_mult_emb=layer0.shape[0] // model_channels,
        num_blocks=num_blocks, attn_resolutions=tuple(attn),
        channel_mult_noise=layer0.shape[1] // (2 * model_channels),
        resample_filter=(1, 1) if taps == 2 else (1, 3, 3, 1),  # taps are loaded with the weights
    )


def _build_unet(sd: Mapping[str, Tensor], dropout: float | None) -> SongUNet:
    try:
        kwargs = infer_unet_kwargs(sd)
    except KeyError as err:
        raise ValueError(f"the checkpoint's U-Net lacks {err}") from None
    net = SongUNet(**kwargs, dropout=UNetConfig.dropout if dropout is None else dropout)
    _load_strict(net, sd, "U-Net")
    return net


# ---------------------------------------------------------------- entry points
def load_official(
    checkpoint: str | Path | Mapping,
    *,
    ema: bool = True,
    input_size: int | tuple[int, int] | None = None,
    num_heads: int | None = None,
    dropout: float | None = None,
) -> DiT | SongUNet:
    """The network of an authors' SoFlow checkpoint, in eval mode: a ``DiT`` or a ``SongUNet``.

    ``ema`` (default) loads ``ema_model``, as their inference does; ``ema=False`` the online
    ``model``. DiT only: ``input_size`` defaults to the grid of the stored pos_embed (32 for
    ImageNet-256 latents), ``num_heads`` to the registered size. U-Net only: ``dropout``
    (default 0.30, their training value; inactive in eval mode).
    """
    sd = official_state_dict(checkpoint, ema=ema)
    if detect_architecture(sd) == "dit":
        net = _build_dit(sd, input_size, num_heads)
    else:
        net = _build_unet(sd, dropout)
    return net.eval()


def load_official_dit(
    checkpoint: str | Path | Mapping,
    *,
    input_size: int | tuple[int, int] | None = None,
    num_heads: int | None = None,
    prefer_ema: bool = True,
) -> DiT:
    """``load_official`` for a checkpoint that must hold a DiT (ImageNet-256 latents)."""
    sd = official_state_dict(checkpoint, ema=prefer_ema)
    if detect_architecture(sd) != "dit":
        raise ValueError("the checkpoint holds a U-Net, not a DiT; use load_official")
    return _build_dit(sd, input_size, num_heads).eval()
