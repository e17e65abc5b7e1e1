"""DiT throughput: forward and forward+backward images/s per size, eager vs torch.compile,
fp32 vs bf16 autocast, and the attention kernel that ran.

All variants of one size are measured in interleaved rounds (medians). Forward runs under
torch.no_grad; forward+backward backpropagates the mean of the output. The attention
kernel is read from the profiler: the aten op that F.scaled_dot_product_attention
dispatched to (for example ``_scaled_dot_product_flash_attention_for_cpu``), or "math"
when no fused kernel ran.

    python benchmarks/throughput.py                            # DiT-T/2, eager + compile, fp32 + bf16
    python benchmarks/throughput.py --sizes DiT-T/2 DiT-S/4 DiT-S/2 --batch 32
    python benchmarks/throughput.py --no-compile               # skip torch.compile (minutes of compilation on a CPU)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets OMP_WAIT_POLICY before torch starts)

import torch  # noqa: E402

from soflow_mini import build_dit  # noqa: E402

ATTENTION_OPS = ("scaled_dot_product", "flash_attention", "efficient_attention", "cudnn_attention")


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return True  # CPU autocast supports bf16; fast where the CPU has AVX512-BF16 / AMX


def attention_kernel(fn) -> str:
    """Names of the attention ops that ran in one call of ``fn`` (profiler), or 'math'."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        fn()
    names = sorted({e.key for e in prof.key_averages() if any(k in e.key for k in ATTENTION_OPS)})
    # report the innermost kernel: drop the dispatcher entry when a specific kernel is listed
    specific = [n for n in names if n not in ("aten::scaled_dot_product_attention",)]
    return ", ".join(specific or names) or "math (no fused attention op)"


def make_variant(size: str, batch: int, num_classes: int, device: torch.device, *, compiled: bool, bf16: bool):
    torch.manual_seed(0)
    net = build_dit(size, 32, 4, num_classes).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, 32, 32, generator=g).to(device)
    t = torch.rand(batch, generator=g).to(device)
    s = t * torch.rand(batch, generator=g).to(device)
    y = torch.randint(0, num_classes, (batch,), generator=g).to(device)
    fn = torch.compile(net) if compiled else net
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def forward() -> None:
        with torch.no_grad(), autocast():
            fn(x, t, s, y)

    def forward_backward() -> None:
        with autocast():
            out = fn(x, t, s, y)
        out.float().mean().backward()
        net.zero_grad(set_to_none=True)

    return forward, forward_backward


def run(args) -> tuple[str, list[str]]:
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows, notes = [], []
    for size in args.sizes:
        variants, kernels, compile_s = {}, {}, {}
        for compiled in ([False, True] if args.compile else [False]):
            for bf16 in ([False, True] if bf16_supported(device) and args.bf16 else [False]):
                name = f"{'compile' if compiled else 'eager'} {'bf16' if bf16 else 'fp32'}"
                fwd, fwdbwd = make_variant(size, args.batch, args.num_classes, device, compiled=compiled, bf16=bf16)
                start = time.perf_counter()
                fwd(), fwdbwd()  # compiles both graphs when compiled
                sync()
                compile_s[name] = time.perf_counter() - start
                kernels[name] = attention_kernel(fwd)
                variants[f"{name}|fwd"], variants[f"{name}|fwdbwd"] = fwd, fwdbwd
        times = common.interleaved_times(variants, repeats=args.repeats, warmup=1, sync=sync)
        base = "eager fp32"
        for name in dict.fromkeys(k.split("|")[0] for k in variants):
            fwd_s, bwd_s = common.median(times[f"{name}|fwd"]), common.median(times[f"{name}|fwdbwd"])
            rf = common.paired_ratio(times, f"{base}|fwd", f"{name}|fwd")[0]
            rb = common.paired_ratio(times, f"{base}|fwdbwd", f"{name}|fwdbwd")[0]
            rows.append([size, name, args.batch / fwd_s, rf, args.batch / bwd_s, rb, compile_s[name], kernels[name]])
    text = [common.header("DiT throughput", args.device),
            f"- Setting: 32x32x4 inputs, {args.num_classes} classes, batch {args.batch}; {args.repeats} interleaved rounds "
            "per size, medians; speed-up = median of per-round ratios against eager fp32 of the same size; first-call "
            "time includes compilation\n\n",
            common.markdown_table(["size", "variant", "forward img/s", "speed-up", "fwd+bwd img/s", "speed-up",
                                   "first calls (s)", "attention kernel"], rows, align="llrrrrrl")]
    return "".join(text), notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["DiT-T/2"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false")
    parser.add_argument("--name", default="throughput")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.setup_threads(args.threads)
    text, _ = run(args)
    common.write_text(args.out / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
