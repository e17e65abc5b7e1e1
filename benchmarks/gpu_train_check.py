"""Training throughput of the cifar10-dit preset's DiT with bf16 autocast, eager vs torch.compile.

Runs the real trainer (soflow_mini.train.Trainer: SoFlow loss, AdamW, float64 EMA every 16
steps) on synthetic CIFAR-shaped data, and prints a Markdown table of images/s (measured
after the warm-up steps, which include compilation) and peak CUDA memory per variant.

    python benchmarks/gpu_train_check.py            # one CUDA GPU, about 3 minutes on an H100
    python benchmarks/gpu_train_check.py --smoke    # tiny sizes, a few steps, runs on a CPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from soflow_mini.train import Trainer, build_config, build_model, read_log  # noqa: E402
from soflow_mini.train.data import ImageData  # noqa: E402


def synthetic_cifar(n: int, seed: int = 0) -> ImageData:
    """n random uint8 32x32 RGB images, served like CIFAR-10 (floats in [-1, 1], random flips)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return ImageData(images, rng.integers(0, 10, n).astype(np.int64), 0, hflip=True)


def run_variant(compile_net: bool, args, device: torch.device) -> dict:
    overrides = {
        "train.bf16": True, "train.compile": compile_net, "train.batch_size": args.batch_size,
        "train.steps": args.warmup + args.steps, "train.log_every": args.log_every,
        "train.checkpoint_every": 0, "train.keep_checkpoints": 1, "train.progress": False,
        **args.model_overrides,
    }
    config = build_config("cifar10-dit", overrides)
    data = synthetic_cifar(max(4 * args.batch_size, 1024))
    torch.manual_seed(0)
    model = build_model(config, data.spec)
    if compile_net:
        model.net.compile()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, data, config.train, run_dir, device=device, write_grid=None)
        trainer.fit()
        rows = read_log(Path(run_dir) / "log.csv")
    total = time.perf_counter() - start
    measured = [r for r in rows if r["step"] > args.warmup]  # windows after warm-up and compilation
    steps_per_s = np.mean([r["steps_per_s"] for r in measured])
    return {
        "variant": "torch.compile" if compile_net else "eager",
        "img_s": steps_per_s * args.batch_size,
        "steps_s": steps_per_s,
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"),
        "wall_s": total,
        "scm_mse": rows[-1]["scm_mse"],
        "params": sum(p.numel() for p in model.net.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny DiT and a few steps; CPU is fine")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--variants", default="eager,compile", help="comma-separated: eager, compile")
    args = parser.parse_args()
    args.model_overrides = {}
    if args.smoke:
        args.batch_size, args.warmup, args.steps, args.log_every = 8, 2, 4, 2
        args.model_overrides = {"model.dit_size": "DiT-T/4", "model.hidden_size": 32, "model.depth": 1,
                                "model.num_heads": 2, "train.device": "auto"}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        sys.exit("gpu_train_check: no CUDA device; use --smoke for a CPU check of the script")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch_size}; "
          f"{args.warmup} warm-up + {args.steps} measured steps; bf16 autocast", flush=True)
    results = []
    for variant in args.variants.split(","):
        results.append(run_variant(variant.strip() == "compile", args, device))
        print(f"  done: {results[-1]['variant']} in {results[-1]['wall_s']:.0f} s", flush=True)
    print(f"\nDiT of the cifar10-dit preset ({results[0]['params']:,} parameters), SoFlow loss, AdamW, "
          f"float64 EMA every 16 steps\n")
    print("| variant | img/s | steps/s | peak memory (GiB) | wall time incl. warm-up (s) | last scm_mse |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['variant']} | {r['img_s']:.0f} | {r['steps_s']:.2f} | {r['peak_gib']:.2f} | "
              f"{r['wall_s']:.0f} | {r['scm_mse']:.4g} |")


if __name__ == "__main__":
    main()
