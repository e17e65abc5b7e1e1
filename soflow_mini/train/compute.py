"""Training compute and memory of an image run, estimated from its network.

Compute. The forward FLOPs are the analytic count for a DiT, and torch's FLOP counter (on
the meta device: no memory, no arithmetic) for any other network such as the U-Net.

training FLOPs = forward FLOPs per sample x forward-pass equivalents per sample x steps x batch.
A pass with gradient costs about 3 forward passes (the backward pass computes gradients
with respect to activations and to weights, each about one forward pass); SoFlow adds
no-grad forward passes: f_theta(x_l, l, s) on the consistency rows and, with guidance,
the unconditional velocity of every row plus the conditional velocity of the consistency
rows. EMA, optimizer and data loading are not counted. An estimate, not a measurement.

Memory. The peak of a float32 training step is the static part (weights, gradients,
optimizer state, EMA) plus activations, which grow with the samples of one pass. The
activations are counted as the bytes autograd saves for the backward pass of one loss
(``saved_activation_bytes``), scaled by the ratio of a measured peak to that count for
DiT-B/2 on one GPU (``MEASURED``): an estimate resting on one measurement.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..nets import DiT
from ..nets.flops import dit_flops_of
from .config import RunConfig, build_config
from .data import DataSpec
from .run import build_model, build_net

# Sample shapes (C, H, W) of the image data sets; latents: ImageNet 256x256 through the SD-VAE.
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {"digits": (1, 8, 8), "cifar10": (3, 32, 32), "latents": (4, 32, 32)}
NUM_CLASSES: dict[str, int] = {"digits": 10, "cifar10": 10, "latents": 1000}
GRAD_PASS = 3.0  # forward + backward, in forward-pass equivalents


@dataclass(frozen=True)
class TrainingCompute:
    forward_flops: int  # one forward pass of the network, one sample
    passes_per_sample: float  # forward-pass equivalents per training sample
    samples: int  # steps x global batch

    @property
    def flops_per_sample(self) -> float:
        return self.forward_flops * self.passes_per_sample

    @property
    def total_flops(self) -> float:
        return self.flops_per_sample * self.samples

    def gpu_hours(self, sustained_flops_per_s: float) -> float:
        """Hours on one device that sustains ``sustained_flops_per_s`` (an assumption)."""
        return self.total_flops / sustained_flops_per_s / 3600.0


def passes_per_sample(config: RunConfig, *, conditional: bool | None = None) -> float:
    """Forward-pass equivalents per training sample of the run's method (see module docstring)."""
    method = config.train.method
    if method == "flow_matching":
        return GRAD_PASS
    if method != "soflow":
        raise ValueError(f"no compute estimate for train.method {method!r}; it covers soflow and flow_matching")
    conditional = config.data.conditional if conditional is None else conditional
    consistency = 1.0 - config.soflow.velocity_loss_ratio  # fraction of rows with the SCM term
    passes = GRAD_PASS + consistency  # gradient pass on all rows, f(x_l, l, s) on SCM rows
    if conditional and config.soflow.uses_guidance:
        passes += 1.0 + consistency  # unconditional velocity of all rows, conditional of SCM rows
    return passes


def forward_flops(net: nn.Module, spec: DataSpec) -> int:
    """FLOPs of one forward pass of ``net`` for one sample of ``spec`` (2 per multiply-add):
    the analytic count for a DiT, torch's FLOP counter (one pass on ``net``'s device) otherwise."""
    if isinstance(net, DiT):
        return dit_flops_of(net).total
    device = next(net.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        x = torch.zeros(1, *spec.shape, device=device)
        t = torch.full((1,), 0.5, device=device)
        y = torch.zeros(1, dtype=torch.long, device=device) if spec.num_classes else None
        net.eval()(x, t, t * 0.5, y)
    return int(counter.get_total_flops())


def _spec(config: RunConfig, shape: tuple[int, int, int] | None) -> DataSpec:
    if config.model.arch == "mlp":
        raise ValueError("compute and memory estimates cover image runs (model.arch 'dit' or 'unet')")
    dataset = config.data.dataset
    if shape is None:
        if dataset not in IMAGE_SHAPES:
            raise ValueError(f"pass shape=(C, H, W): no default sample shape for data set {dataset!r}")
        shape = IMAGE_SHAPES[dataset]
    classes = NUM_CLASSES.get(dataset, 0) if config.data.conditional else 0
    return DataSpec("image", tuple(shape), classes)


def training_compute(config: RunConfig, shape: tuple[int, int, int] | None = None) -> TrainingCompute:
    """Estimated training compute of an image run (``shape`` (C, H, W) defaults by data set)."""
    spec = _spec(config, shape)
    # A DiT's count needs its hyperparameters only (meta: no memory, no initialisation); other
    # networks run one CPU pass under the FLOP counter.
    with torch.device("meta" if config.model.arch == "dit" else "cpu"):
        net = build_net(config.model, spec)
    return TrainingCompute(
        forward_flops=forward_flops(net, spec),
        passes_per_sample=passes_per_sample(config),
        samples=config.train.steps * config.train.batch_size,
    )


# ---------------------------------------------------------------- memory
@dataclass(frozen=True)
class MemoryMeasurement:
    """A measured peak of one float32 training step above the memory held before it."""

    preset: str
    overrides: dict
    batch: int
    peak_mib: float
    source: str

    @property
    def mib_per_sample(self) -> float:
        return self.peak_mib / self.batch


# benchmarks/results/gpu_step_cost.md: DiT-B/2 on 32x32x4 latents, 1000 classes, SoFlow with the
# ImageNet loss setting at cfg_scale 1, batch 64, fp32, H200: 1.191e+04 MiB (186 MiB per sample).
MEASURED = MemoryMeasurement("imagenet256-b2", {"soflow.cfg_scale": 1.0}, 64, 1.191e4,
                             "benchmarks/results/gpu_step_cost.md")


def saved_activation_bytes(model: nn.Module, x0: torch.Tensor, y: torch.Tensor | None = None, **kwargs) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one ``model(x0, y)`` loss
    (each storage once; parameters excluded). On the meta device this costs no memory."""
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in params:
            saved.setdefault(storage._cdata, storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x0, y, step=0, total_steps=1, **kwargs)
    return sum(saved.values())


def activation_bytes_per_sample(config: RunConfig, shape: tuple[int, int, int] | None = None,
                                *, device: str = "meta") -> float:
    """Saved activation bytes per training sample of the run's loss, from batches of 4 and 8
    (their difference removes what does not grow with the batch). ``device`` "meta" needs no
    memory; a network with dropout needs "cpu" (its random-state fork needs real tensors)."""
    spec = _spec(config, shape)
    counts = []
    for batch in (4, 8):
        with torch.device(device):
            torch.manual_seed(0)
            model = build_model(config, spec).to(device).train()  # buffers made from numpy too
            x0 = torch.randn(batch, *spec.shape)
            y = torch.randint(0, spec.num_classes, (batch,)) if spec.num_classes else None
            kwargs = {"augment_labels": torch.zeros(batch, 6)} if config.data.augment_p > 0 else {}
        counts.append(saved_activation_bytes(model, x0, y, **kwargs))
    return (counts[1] - counts[0]) / 4


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated float32 peak memory of one training step on one GPU."""

    parameters: int
    static_bytes: int  # weights, gradients, optimizer state and EMA
    bytes_per_sample: float  # activations, calibrated on the measurement

    def peak_bytes(self, samples_per_pass: int) -> float:
        return self.static_bytes + self.bytes_per_sample * samples_per_pass

    def max_samples_per_pass(self, budget_bytes: float) -> int:
        """The largest pass that fits ``budget_bytes``."""
        return max(0, int((budget_bytes - self.static_bytes) // self.bytes_per_sample))


@functools.lru_cache(maxsize=1)
def _calibration() -> float:
    """Measured bytes per sample over counted saved bytes per sample, for the measured setting
    (gradients, part of the measured step peak, taken out first)."""
    config = build_config(MEASURED.preset, MEASURED.overrides)
    with torch.device("meta"):
        n = sum(p.numel() for p in build_net(config.model, _spec(config, None)).parameters())
    measured = (MEASURED.peak_mib * 2**20 - 4 * n) / MEASURED.batch
    return measured / activation_bytes_per_sample(config)


def estimate_memory(config: RunConfig, shape: tuple[int, int, int] | None = None, *, device: str = "meta",
                    calibration: float | None = None) -> MemoryEstimate:
    """Estimated float32 training memory of a run: static bytes plus calibrated activations."""
    spec = _spec(config, shape)
    with torch.device("meta"):
        n = sum(p.numel() for p in build_net(config.model, spec).parameters())
    ema = 8 if config.train.ema_dtype == "float64" else 4
    static = n * (4 + 4 + 8 + ema)  # weights, gradients, two optimizer moments, EMA
    scale = _calibration() if calibration is None else calibration
    return MemoryEstimate(n, static, activation_bytes_per_sample(config, shape, device=device) * scale)
