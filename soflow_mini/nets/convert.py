"""Load the authors' released SoFlow DiT weights into ``soflow_mini.nets.DiT``.

Their key layout follows the original DiT code: x_embedder, t_embedder, s_embedder (the
embedder of the gap t - s), y_embedder, blocks, final_layer and a stored pos_embed. The
architecture is read off the tensor shapes; the number of heads, which shapes do not
reveal, comes from the size registry or the ``num_heads`` argument.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from .dit import DIT_SIZES, DiT

_RENAMES = {"s_embedder.": "gap_embedder."}
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "net.")
_EMA_KEYS = ("ema", "ema_model", "model_ema")
_MODEL_KEYS = ("model", "state_dict", "net")


def _extract_state_dict(checkpoint: Mapping, prefer_ema: bool) -> dict[str, Tensor]:
    """Find the DiT weights in a checkpoint dict, descending into e.g. checkpoint["ema"]."""
    if any(isinstance(k, str) and k.endswith("x_embedder.proj.weight") for k in checkpoint):
        return dict(checkpoint)
    order = _EMA_KEYS + _MODEL_KEYS if prefer_ema else _MODEL_KEYS + _EMA_KEYS
    for key in order:
        if isinstance(checkpoint.get(key), Mapping):
            return _extract_state_dict(checkpoint[key], prefer_ema)
    raise ValueError(
        f"no DiT weights found: expected x_embedder.* keys or one of {list(order)}, "
        f"got keys {list(checkpoint)[:8]}"
    )


def convert_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename keys of an official SoFlow DiT state dict to this package's names."""
    out = {}
    for key, value in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        for old, new in _RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
        if key == "pos_embed":  # fixed sin-cos table: rebuilt by the model, not loaded
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
    num_classes = sd["y_embedder.embedding_table.weight"].shape[0] - 1 if "y_embedder.embedding_table.weight" in sd else 0
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


def load_official_dit(
    checkpoint: str | Path | Mapping,
    *,
    input_size: int | tuple[int, int] | None = None,
    num_heads: int | None = None,
    prefer_ema: bool = True,
) -> DiT:
    """Build a ``DiT`` from an official SoFlow checkpoint (a path or an already loaded dict).

    ``input_size`` defaults to the square grid implied by a stored pos_embed (32 for
    ImageNet-256 latents). EMA weights are used when the checkpoint holds them.
    """
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    raw = _extract_state_dict(checkpoint, prefer_ema)
    sd = convert_official_state_dict(raw)
    if input_size is None:
        pos = next((v for k, v in raw.items() if k.endswith("pos_embed")), None)
        if pos is None:
            raise ValueError("the checkpoint stores no pos_embed: pass input_size")
        patch = sd["x_embedder.proj.weight"].shape[2]
        side = int(round(pos.shape[-2] ** 0.5))
        if side * side != pos.shape[-2]:
            raise ValueError(f"pos_embed with {pos.shape[-2]} tokens is not a square grid: pass input_size")
        input_size = side * patch
    model = DiT(**_infer_dit_kwargs(sd, num_heads, input_size))
    model.load_state_dict(sd, strict=True)
    return model
