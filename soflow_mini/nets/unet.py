"""The U-Net of SoFlow's CIFAR-10 runs: EDM's DDPM++ configuration ("SongUNet", Karras et al.
2022, after Song et al. 2021) with SoFlow's two time embeddings.

Reads top to bottom: initialisation and layers, the residual block, the time embedding, the
model, the named configurations. Contract: SongUNet(x, t, s, y=None, augment_labels=None) -> F
with the shape of x, where x (B, C, R, R), t and s (B,) in [0, 1], augment_labels (B, 6) or None.

Conditioning: emb = [PE(t), PE(t - s)] (+ A augment_labels), then two Linear-SiLU layers; every
residual block adds a projection of emb to its features. Module and parameter names follow
EDM's (``map_layer0``, ``enc.32x32_conv``, ``dec.8x8_in0``, ...), so the authors' state dicts
(their ``network.`` prefix removed) load with ``strict=True``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SKIP_SCALE = math.sqrt(0.5)  # every residual sum is scaled so its variance stays near 1
NORM_EPS = 1e-6  # EDM's DDPM++ passes eps 1e-6 to every GroupNorm (its layer default is 1e-5)


# ---------------------------------------------------------------- initialisation and layers
# EDM initialises every weight xavier-uniform times a gain and every bias at zero:
#   gain 1 for ordinary layers;
#   gain 1e-5 ("init_zero") for the last conv of each residual branch, the attention output and
#     the output conv, so a fresh net is close to (not exactly) an identity stack with output ~0;
#   gain sqrt(0.2) for the attention's qkv projection.
INIT_ZERO_GAIN = 1e-5
INIT_ATTN_GAIN = math.sqrt(0.2)


def _xavier_(weight: Tensor, bias: Tensor | None, gain: float = 1.0) -> None:
    """U(-a, a) with a = gain sqrt(6 / (fan_in + fan_out)) (fans include the kernel area); bias 0."""
    nn.init.xavier_uniform_(weight, gain=gain)
    if bias is not None:
        nn.init.zeros_(bias)


def linear(in_features: int, out_features: int, *, bias: bool = True, gain: float = 1.0) -> nn.Linear:
    """nn.Linear with EDM's xavier-uniform initialisation."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    _xavier_(layer.weight, layer.bias, gain)
    return layer


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with min(32, C // 4) groups (at least 4 channels per group), eps 1e-6."""
    groups = min(32, channels // 4)
    if groups < 1 or channels % groups:
        raise ValueError(
            f"{channels} channels cannot be split into min(32, C // 4) = {groups} equal groups; "
            "choose model_channels (times each channel_mult) as a multiple of 4 that such groups divide"
        )
    return nn.GroupNorm(groups, channels, eps=NORM_EPS)


class Conv2d(nn.Module):
    """A k x k convolution ('same' padding), optionally preceded by a 2x up- or downsampling
    with a fixed separable low-pass filter (FIR filter f, 2D kernel f f^T / sum(f)^2).

    The 2D filter is a persistent buffer ``resample_filter`` when the layer resamples (it is
    part of EDM's state dicts). Down: depthwise conv with stride 2. Up: depthwise transposed
    conv with stride 2 and the filter times 4 (to keep the mean).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        up: bool = False,
        down: bool = False,
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),
        gain: float = 1.0,
    ):
        super().__init__()
        if up and down:
            raise ValueError("a Conv2d resamples up or down, not both")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down = up, down
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(out_channels))
        _xavier_(self.weight, self.bias, gain)
        if up or down:
            f = torch.as_tensor(resample_filter, dtype=torch.float32)
            self.register_buffer("resample_filter", (torch.outer(f, f) / f.sum() ** 2)[None, None])  # (1, 1, k, k)
        else:
            self.resample_filter = None

    def forward(self, x: Tensor) -> Tensor:
        if self.resample_filter is not None:
            f = self.resample_filter.to(x.dtype)
            pad = (f.shape[-1] - 1) // 2
            C = x.shape[1]
            if self.up:
                x = F.conv_transpose2d(x, (4 * f).tile(C, 1, 1, 1), stride=2, padding=pad, groups=C)  # (B, C, 2H, 2W)
            else:
                x = F.conv2d(x, f.tile(C, 1, 1, 1), stride=2, padding=pad, groups=C)  # (B, C, H/2, W/2)
        return F.conv2d(x, self.weight, self.bias, padding=self.weight.shape[-1] // 2)  # (B, out, H', W')


# ---------------------------------------------------------------- residual block
class UNetBlock(nn.Module):
    """DDPM++ residual block, optionally resampling, optionally followed by self-attention.

        h = conv0(SiLU(norm0(x)))                      (up/down inside conv0)
        h = conv1(dropout(SiLU(norm1(h + affine(emb)))))
        x = (h + skip(x)) / sqrt(2)                     (skip: 1x1 conv when shapes change)
        x = (proj(attention(norm2(x))) + x) / sqrt(2)   (one head, if ``attention``)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        dropout: float = 0.0,
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),
        takes_skip: bool = False,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.takes_skip = takes_skip  # decoder block: its input is [x, encoder skip] concatenated
        resample = dict(up=up, down=down, resample_filter=resample_filter)
        self.norm0 = group_norm(in_channels)
        self.conv0 = Conv2d(in_channels, out_channels, 3, **resample)
        self.affine = linear(emb_channels, out_channels)
        self.norm1 = group_norm(out_channels)
        self.drop = nn.Dropout(dropout)  # a module, so SoFlow sees it and repeats its masks
        self.conv1 = Conv2d(out_channels, out_channels, 3, gain=INIT_ZERO_GAIN)
        self.skip = None
        if in_channels != out_channels or up or down:
            self.skip = Conv2d(in_channels, out_channels, 1, **resample)
        self.attention = attention
        if attention:
            self.norm2 = group_norm(out_channels)
            self.qkv = Conv2d(out_channels, 3 * out_channels, 1, gain=INIT_ATTN_GAIN)
            self.proj = Conv2d(out_channels, out_channels, 1, gain=INIT_ZERO_GAIN)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))  # (B, out, H', W')
        h = F.silu(self.norm1(h + self.affine(emb)[:, :, None, None]))  # (B, out, H', W')
        h = self.conv1(self.drop(h))  # (B, out, H', W')
        x = (h + (x if self.skip is None else self.skip(x))) * SKIP_SCALE  # (B, out, H', W')
        if self.attention:
            B, C, H, W = x.shape
            # EDM's channel layout of the qkv output is (channel, {q, k, v}), not ({q, k, v}, channel).
            q, k, v = self.qkv(self.norm2(x)).reshape(B, C, 3, H * W).unbind(2)  # (B, C, HW) each
            q, k, v = (z.transpose(1, 2)[:, None] for z in (q, k, v))  # (B, 1, HW, C)
            with torch.autocast(x.device.type, enabled=False):  # EDM computes attention in float32
                a = F.scaled_dot_product_attention(q.float(), k.float(), v.float())  # (B, 1, HW, C)
            a = a.to(x.dtype)[:, 0].transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)
            x = (self.proj(a) + x) * SKIP_SCALE  # (B, C, H, W)
        return x


# ---------------------------------------------------------------- time embedding
def positional_embedding(t: Tensor, channels: int, max_positions: int = 10_000) -> Tensor:
    """[sin(t w_i), cos(t w_i)] with w_i = max_positions^(-i / (channels/2 - 1)), i < channels/2.

    EDM's PositionalEmbedding with ``endpoint=True`` (the last frequency is exactly
    1 / max_positions), with its two halves (cos, sin) swapped as SongUNet does. t (B,) ->
    (B, channels).
    """
    half = channels // 2
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32  # never below fp32
    freqs = (1.0 / max_positions) ** (torch.arange(half, device=t.device, dtype=dtype) / (half - 1))  # (half,)
    args = t.to(dtype)[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, channels)


# ---------------------------------------------------------------- the model
class SongUNet(nn.Module):
    """EDM's DDPM++ U-Net returning F(x, t, s) with the shape of x (unconditional).

    Defaults are the configuration of SoFlow's CIFAR-10 runs (55,932,419 parameters):
    32x32 RGB, 128 base channels times (2, 2, 2) over three resolutions (32, 16, 8), four
    residual blocks per resolution, attention at 16x16, embedding width 512, dropout 0.30,
    FIR resampling filter (1, 3, 3, 1). The time embedding has ``model_channels *
    channel_mult_noise`` channels for t and as many for the gap t - s. ``augment_dim`` is the
    number of augmentation labels (0: none); ``augment_labels`` may be left out (None), as at
    sampling, which is the same as all-zero labels.
    """

    num_classes = 0  # unconditional: y must be None

    def __init__(
        self,
        img_resolution: int = 32,
        in_channels: int = 3,
        out_channels: int = 3,
        augment_dim: int = 6,
        model_channels: int = 128,
        channel_mult: tuple[int, ...] = (2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions: tuple[int, ...] = (16,),
        dropout: float = 0.30,
        channel_mult_noise: int = 2,
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),
    ):
        super().__init__()
        levels = len(channel_mult)
        if levels < 1 or img_resolution % (2 ** (levels - 1)):
            raise ValueError(
                f"img_resolution {img_resolution} must be divisible by 2^(len(channel_mult) - 1) = {2 ** (levels - 1)}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if augment_dim < 0:
            raise ValueError(f"augment_dim must be >= 0, got {augment_dim}")
        if model_channels * channel_mult_noise < 4:
            raise ValueError("model_channels * channel_mult_noise must be at least 4 (two frequencies per half)")
        self.img_resolution, self.in_channels, self.out_channels = img_resolution, in_channels, out_channels
        self.augment_dim = augment_dim
        self.noise_channels = model_channels * channel_mult_noise  # per time embedding
        emb_channels = model_channels * channel_mult_emb
        block = dict(emb_channels=emb_channels, dropout=dropout, resample_filter=tuple(resample_filter))

        # Mapping: [PE(t), PE(t - s)] (+ augmentation) -> two Linear-SiLU layers.
        cond_channels = 2 * self.noise_channels
        self.map_augment = linear(augment_dim, cond_channels, bias=False) if augment_dim else None
        self.map_layer0 = linear(cond_channels, emb_channels)
        self.map_layer1 = linear(emb_channels, emb_channels)

        # Encoder: a conv at full resolution, then per resolution [downsampling block,] blocks.
        self.enc = nn.ModuleDict()
        cout = model_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(in_channels, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        skips = [m.out_channels for m in self.enc.values()]  # every encoder output is kept

        # Decoder: per resolution (coarsest first) [two middle blocks | upsampling block], then
        # num_blocks + 1 blocks each consuming one encoder output; the output head at full size.
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == levels - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, takes_skip=True, **block)
        self.dec[f"{img_resolution}x{img_resolution}_aux_norm"] = group_norm(cout)
        self.dec[f"{img_resolution}x{img_resolution}_aux_conv"] = Conv2d(cout, out_channels, 3, gain=INIT_ZERO_GAIN)

    @classmethod
    def cifar10(cls, **overrides) -> "SongUNet":
        """The U-Net of SoFlow's CIFAR-10 runs (the defaults); keyword arguments override fields."""
        return cls(**{**asdict(UNET_CONFIGS["cifar10"]), **overrides})

    def embed(self, t: Tensor, s: Tensor, augment_labels: Tensor | None = None) -> Tensor:
        """The conditioning vector of every block: (B,) times -> (B, emb_channels)."""
        emb = torch.cat([positional_embedding(t, self.noise_channels),
                         positional_embedding(t - s, self.noise_channels)], dim=1)  # (B, 2 * noise)
        emb = emb.to(self.map_layer0.weight.dtype)
        if augment_labels is not None and self.map_augment is not None:
            emb = emb + self.map_augment(augment_labels.to(emb.dtype))  # (B, 2 * noise)
        emb = F.silu(self.map_layer0(emb))  # (B, emb)
        return F.silu(self.map_layer1(emb))  # (B, emb)

    def forward(
        self, x: Tensor, t: Tensor, s: Tensor, y: Tensor | None = None, augment_labels: Tensor | None = None
    ) -> Tensor:
        R = self.img_resolution
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, R, R):
            raise ValueError(f"x must have shape (B, {self.in_channels}, {R}, {R}), got {tuple(x.shape)}")
        if y is not None:
            raise ValueError("y must be None: this U-Net is unconditional (num_classes=0)")
        if augment_labels is not None:
            if self.map_augment is None:
                raise ValueError("augment_labels must be None: this U-Net has augment_dim=0")
            if tuple(augment_labels.shape) != (x.shape[0], self.augment_dim):
                raise ValueError(
                    f"augment_labels must have shape (B, {self.augment_dim}) = ({x.shape[0]}, {self.augment_dim}), "
                    f"got {tuple(augment_labels.shape)}"
                )
        emb = self.embed(t, s, augment_labels)  # (B, emb)

        skips = []
        for module in self.enc.values():
            x = module(x, emb) if isinstance(module, UNetBlock) else module(x)  # (B, C_l, R_l, R_l)
            skips.append(x)
        out = None
        for name, module in self.dec.items():
            if name.endswith("_aux_norm"):
                out = module(x)  # (B, C, R, R)
            elif name.endswith("_aux_conv"):
                out = module(F.silu(out))  # (B, out_channels, R, R)
            else:
                if module.takes_skip:
                    x = torch.cat([x, skips.pop()], dim=1)  # (B, C + C_skip, R_l, R_l)
                x = module(x, emb)  # (B, C_l, R_l, R_l)
        return out


# ---------------------------------------------------------------- named configurations
@dataclass(frozen=True)
class UNetConfig:
    """Constructor arguments of a SongUNet (all but the image shape)."""

    augment_dim: int = 6
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (2, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.30
    channel_mult_noise: int = 2
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)


UNET_CONFIGS: dict[str, UNetConfig] = {
    # SoFlow's CIFAR-10 network (EDM DDPM++ with dropout 0.30 and two time embeddings).
    "cifar10": UNetConfig(),
    # A small version for CPU tests and demos (this project's choice; 178,211 parameters on
    # 8x8 RGB): two resolutions, attention at the coarse one when the images are 8x8.
    "tiny": UNetConfig(augment_dim=6, model_channels=16, channel_mult=(1, 2), channel_mult_emb=2, num_blocks=1,
                       attn_resolutions=(4,), dropout=0.0, channel_mult_noise=1),
}


def build_unet(
    name: str = "cifar10",
    *,
    img_resolution: int = 32,
    in_channels: int = 3,
    dropout: float | None = None,
    augment_dim: int | None = None,
) -> SongUNet:
    """A SongUNet of a named configuration (``UNET_CONFIGS``) for square images of
    ``img_resolution`` with ``in_channels`` channels; ``dropout`` / ``augment_dim`` override."""
    if name not in UNET_CONFIGS:
        raise ValueError(f"unknown U-Net configuration {name!r}; choose one of {list(UNET_CONFIGS)}")
    fields = asdict(UNET_CONFIGS[name])
    if dropout is not None:
        fields["dropout"] = dropout
    if augment_dim is not None:
        fields["augment_dim"] = augment_dim
    return SongUNet(img_resolution=img_resolution, in_channels=in_channels, out_channels=in_channels, **fields)
