"""The SoFlow training step and sampler on fixed inputs, pinned by a stored golden file.

``python tests/golden/soflow_step.py`` rewrites ``soflow_step.json`` (do so only for a change
that is meant to alter the step's results, and say why in the commit). The network is a
float64 ToyMLP, so the stored values do not depend on the CPU's float32 kernels.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from soflow_mini import SoFlow, SoFlowConfig, ToyMLP

GOLDEN = Path(__file__).with_suffix(".json")
CASES = [(preset, coefficients, cfg_scale)
         for preset, cfg_scale in (("toy", 1.0), ("imagenet256", 3.0), ("cifar10", 1.0))
         for coefficients in ("euler", "trig")]


def step_results(preset: str, coefficient_type: str, cfg_scale: float) -> dict[str, list[float]]:
    """Loss, logs, per-parameter gradient norms and 2-NFE samples of one step on fixed inputs."""
    config = dataclasses.replace(SoFlowConfig.preset(preset), coefficient_type=coefficient_type, cfg_scale=cfg_scale)
    torch.manual_seed(0)
    net = ToyMLP(width=16, depth=2, num_classes=3).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=g)
    model = SoFlow(net, config)
    loss, logs = model.loss(x, y, step=4, total_steps=10, generator=torch.Generator().manual_seed(1))
    loss.backward()
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    samples = model.sample(noise, y[:8], nfe=2, generator=torch.Generator().manual_seed(3))
    return {
        "loss": [loss.item()],
        "logs": [float(v) for v in logs.values()],
        "grad_norms": [p.grad.norm().item() for p in net.parameters()],
        "samples": samples.flatten().tolist(),
    }


def all_results() -> dict[str, dict[str, list[float]]]:
    return {"/".join(map(str, case)): step_results(*case) for case in CASES}


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(all_results(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
