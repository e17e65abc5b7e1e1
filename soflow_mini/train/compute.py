"""Training compute of a DiT run, estimated from the analytic FLOP count of its network.

training FLOPs = forward FLOPs per sample x forward-pass equivalents per sample x steps x batch.
A pass with gradient costs about 3 forward passes (the backward pass computes gradients
with respect to activations and to weights, each about one forward pass); SoFlow adds
no-grad forward passes: f_theta(x_l, l, s) on the consistency rows and, with guidance,
the unconditional velocity of every row plus the conditional velocity of the consistency
rows. EMA, optimizer and data loading are not counted. An estimate, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..nets.flops import dit_flops_of
from .config import RunConfig
from .data import DataSpec
from .run import build_net

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


def training_compute(config: RunConfig, shape: tuple[int, int, int] | None = None) -> TrainingCompute:
    """Estimated training compute of a DiT run (``shape`` (C, H, W) defaults by data set)."""
    if config.model.arch != "dit":
        raise ValueError("compute estimates cover DiT runs (model.arch 'dit')")
    dataset = config.data.dataset
    if shape is None:
        if dataset not in IMAGE_SHAPES:
            raise ValueError(f"pass shape=(C, H, W): no default sample shape for data set {dataset!r}")
        shape = IMAGE_SHAPES[dataset]
    classes = NUM_CLASSES.get(dataset, 0) if config.data.conditional else 0
    with torch.device("meta"):  # hyperparameters only: no memory, no initialisation cost
        net = build_net(config.model, DataSpec("image", tuple(shape), classes))
    return TrainingCompute(
        forward_flops=dit_flops_of(net).total,
        passes_per_sample=passes_per_sample(config),
        samples=config.train.steps * config.train.batch_size,
    )
