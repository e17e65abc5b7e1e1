"""Training-step cost on a DiT: flow matching, SoFlow (with and without guidance), MeanFlow.

One step = loss, backward, AdamW update, on the same class-conditional DiT (same
initialisation), the same batch of 32x32x4 latents and labels:

- flow matching: FlowMatching with 10% label dropout (its guidance is applied at sampling);
- SoFlow: the imagenet256 preset with cfg_scale 1 (no guidance) and with cfg_scale 3
  (guidance baked into training: one extra batched no-grad forward);
- SoFlow, cifar10 preset: every row gets the consistency term (velocity_loss_ratio 0);
- MeanFlow: the JVP through torch.func.jvp, tangent (v, 1, 0), at its strongest: the
  stop-gradient target from a JVP without graph plus a plain forward with gradient (the
  library default), and the one-call form whose tangent pass autograd records
  ("meanflow_autograd"). Fused attention kernels have no forward-mode AD, so attention runs
  on the math backend inside the JVP; --variants flow_matching@math soflow@math adds the
  other methods on that backend too.

Time per step: all variants live in one process and their steps are interleaved
(A B C D A B C D ...); the table gives medians and the median of the per-round ratios.

Peak memory on a CPU: torch has no allocator statistics for the CPU, and tracemalloc does
not see torch's allocations. Each variant runs in a fresh subprocess with glibc's mmap
threshold fixed at 64 KiB (MALLOC_MMAP_THRESHOLD_), so every tensor above 64 KiB is its own
mapping, returned to the system when freed: the resident set then follows the live tensors
to the page. After warm-up steps (optimizer state allocated) the subprocess records its
resident size, resets the kernel's high-water mark (write 5 to /proc/self/clear_refs) and
runs measured steps; the peak is VmHWM minus that baseline: activations, gradients and
temporaries of one step, the same quantity torch.cuda.max_memory_allocated gives on a GPU
after the same reset. Each run checks the method on a step whose peak is known exactly.

    python benchmarks/step_cost.py                       # DiT-T/2, batch 16 (~2 min)
    python benchmarks/step_cost.py --size DiT-S/4 --batch 32 --repeats 9
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets OMP_WAIT_POLICY before torch starts)

import torch  # noqa: E402

from soflow_mini import (  # noqa: E402
    FlowMatching, FlowMatchingConfig, MeanFlow, MeanFlowConfig, SoFlow, SoFlowConfig, build_dit,
)

VARIANTS = {
    "flow_matching": "flow matching",
    "soflow": "SoFlow (imagenet256, cfg_scale 1: no guidance)",
    "soflow_guided": "SoFlow + guidance (imagenet256, cfg_scale 3)",
    "soflow_cifar10": "SoFlow (cifar10 preset: all rows consistency)",
    "meanflow": "MeanFlow (JVP without graph + forward with gradient)",
    "meanflow_autograd": "MeanFlow (one JVP recorded by autograd)",
    # Inside torch.func.jvp attention runs on the math backend (fused kernels have no forward-mode
    # AD); these rows run the other methods on it too, to separate the JVP from the kernel.
    "flow_matching@math": "flow matching, math attention",
    "soflow@math": "SoFlow (cfg_scale 1), math attention",
}
DEFAULT_VARIANTS = tuple(v for v in VARIANTS if "@" not in v)


def build_model(variant: str, size: str, num_classes: int, seed: int = 0) -> torch.nn.Module:
    variant = variant.split("@")[0]
    torch.manual_seed(seed)  # the same initial weights for every variant
    net = build_dit(size, 32, 4, num_classes)
    if variant == "flow_matching":
        return FlowMatching(net, FlowMatchingConfig(cfg_drop_rate=0.1))
    if variant == "soflow":
        return SoFlow(net, dataclasses.replace(SoFlowConfig.preset("imagenet256"), cfg_scale=1.0))
    if variant == "soflow_guided":
        return SoFlow(net, SoFlowConfig.preset("imagenet256"))
    if variant == "soflow_cifar10":
        return SoFlow(net, SoFlowConfig.preset("cifar10"))
    if variant == "meanflow":
        return MeanFlow(net)
    if variant == "meanflow_autograd":
        return MeanFlow(net, MeanFlowConfig(jvp="autograd"))
    raise ValueError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")


def make_step(model: torch.nn.Module, batch: int, num_classes: int, *, fused: bool | None = None, seed: int = 0,
              math_attention: bool = False):
    """A closure running one training step on a fixed batch; the step counter advances."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    attention = (lambda: sdpa_kernel(SDPBackend.MATH)) if math_attention else contextlib.nullcontext
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 32, 32, generator=g)
    y = torch.randint(0, num_classes, (batch,), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, fused=fused)
    state = {"k": 0}

    def step() -> None:
        with attention():
            loss, _ = model.loss(x, y, step=state["k"], total_steps=1000)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)  # gradients do not outlive the step (as in soflow_mini.train)
        state["k"] += 1

    return step


# ---------------------------------------------------------------------- memory (child process)
def _proc_status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_step_bytes(step, steps: int = 2) -> int:
    """Peak resident bytes above the pre-step baseline over ``steps`` steps (see module doc)."""
    gc.collect()
    base = _proc_status("VmRSS")
    _reset_peak()
    for _ in range(steps):
        step()
    return _proc_status("VmHWM") - base


def memory_selftest() -> tuple[float, float]:
    """(measured, expected) peak MiB of a step whose live tensors are known. For a 1000 x 1000
    float32 x (x.grad already allocated), y = exp(2 x) kept alive through y.sum().backward():
    the peak holds three tensors of x's size (y, the gradient at y, the gradient at 2 x)."""
    x = torch.randn(1000, 1000, requires_grad=True)

    def step():
        y = (x * 2).exp()
        y.sum().backward()
        del y

    step()  # x.grad allocated
    return peak_step_bytes(step, steps=1) / 2**20, 3 * x.numel() * 4 / 2**20


def memory_child(args) -> None:
    common.setup_threads(args.threads)
    if args.child == "selftest":
        measured, expected = memory_selftest()
        print(json.dumps({"peak_bytes": measured * 2**20, "expected_bytes": expected * 2**20}))
        return
    model = build_model(args.child, args.size, args.num_classes)
    step = make_step(model, args.batch, args.num_classes, fused=args.fused, math_attention=args.child.endswith("@math"))
    for _ in range(2):  # allocates AdamW's state and any lazily built buffers
        step()
    print(json.dumps({"peak_bytes": peak_step_bytes(step)}))


def measure_memory(variant: str, args) -> int:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--size", args.size,
           "--batch", str(args.batch), "--num-classes", str(args.num_classes), "--threads", str(max(args.threads, 1))]
    if args.fused:
        cmd.append("--fused")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    found = json.loads(out.strip().splitlines()[-1])
    return found["peak_bytes"] if variant != "selftest" else (found["peak_bytes"], found["expected_bytes"])


def memory_available() -> bool:
    return Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()


# ---------------------------------------------------------------------- main
def run(args) -> tuple[str, list[str]]:
    variants = list(args.variants)
    steps = {v: make_step(build_model(v, args.size, args.num_classes), args.batch, args.num_classes, fused=args.fused,
                          math_attention=v.endswith("@math")) for v in variants}
    t0 = time.perf_counter()
    times = common.interleaved_times(steps, repeats=args.repeats, inner=1, warmup=2)
    elapsed = time.perf_counter() - t0
    memory, check = {}, ""
    if args.memory and memory_available():
        measured, expected = measure_memory("selftest", args)
        check = (f"; method check: {measured / 2**20:.2f} MiB measured for a step whose live tensors peak at "
                 f"{expected / 2**20:.2f} MiB")
        for v in variants:
            memory[v] = [measure_memory(v, args) for _ in range(args.memory_runs)]
    base = "flow_matching" if "flow_matching" in variants else variants[0]
    rows = []
    for v in variants:
        ratio, lo, hi = common.paired_ratio(times, v, base)
        mf = common.paired_ratio(times, v, "meanflow")[0] if "meanflow" in variants else float("nan")
        mem = min(memory[v]) / 2**20 if v in memory else float("nan")
        mem_fm = mem / (min(memory[base]) / 2**20) if v in memory else float("nan")
        mem_mf = mem / (min(memory["meanflow"]) / 2**20) if v in memory and "meanflow" in memory else float("nan")
        rows.append([VARIANTS.get(v, v), 1e3 * common.median(times[v]), f"{ratio:.3f} [{lo:.3f}, {hi:.3f}]",
                     mf, mem, mem_fm, mem_mf])
    nparams = sum(p.numel() for p in build_dit(args.size, 32, 4, args.num_classes).parameters())
    text = [common.header(f"Training-step cost, {args.size}"),
            f"- Setting: {args.size} ({nparams / 1e6:.2f}M parameters) on 32x32x4 latents, {args.num_classes} classes, "
            f"batch {args.batch}, AdamW ({'fused' if args.fused else 'torch default'}); {args.repeats} interleaved rounds "
            f"after 2 warm-up steps ({elapsed:.0f} s); peak memory: fresh subprocess per variant, resident-set high-water "
            f"mark above the pre-step baseline with MALLOC_MMAP_THRESHOLD_=65536, min of {args.memory_runs} run(s){check}\n\n",
            common.markdown_table(
                ["variant", "ms / step (median)", "time / flow matching (median [IQR])", "time / MeanFlow",
                 "peak step memory (MiB)", "memory / flow matching", "memory / MeanFlow"], rows)]
    lines = []
    if "meanflow" in variants and "soflow" in variants:
        r_mf = common.paired_ratio(times, "soflow", "meanflow")[0]
        lines.append(common.target_line("DiT step time: SoFlow <= 0.8x MeanFlow", r_mf <= 0.8, f"{r_mf:.3f}x"))
        if memory:
            m = min(memory["soflow"]) / min(memory["meanflow"])
            lines.append(common.target_line("DiT peak memory: SoFlow <= 0.8x MeanFlow", m <= 0.8, f"{m:.3f}x"))
        if "soflow_guided" in variants:
            r_g = common.paired_ratio(times, "soflow_guided", "meanflow")[0]
            m_g = (min(memory["soflow_guided"]) / min(memory["meanflow"])) if memory else float("nan")
            lines.append(f"info: SoFlow + guidance vs MeanFlow (MeanFlow without guidance): time {r_g:.3f}x, memory {m_g:.3f}x")
    if "flow_matching" in variants and "soflow" in variants:
        r_fm = common.paired_ratio(times, "soflow", "flow_matching")[0]
        lines.append(common.target_line("DiT step time: SoFlow <= 1.35x flow matching", r_fm <= 1.35, f"{r_fm:.3f}x"))
        for v in ("soflow_guided", "soflow_cifar10"):
            if v in variants:
                lines.append(f"info: {VARIANTS[v]} vs flow matching: time {common.paired_ratio(times, v, 'flow_matching')[0]:.3f}x")
    text.append("\n## Targets\n\n" + "".join(f"- {line}\n" for line in lines))
    return "".join(text), lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="DiT-T/2")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (one step of each variant per round)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--fused", action="store_true", help="fused AdamW")
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--memory-runs", type=int, default=1)
    parser.add_argument("--name", help="result file stem (default: step_cost_<size>)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.setup_threads(args.threads)
    if args.child:
        memory_child(args)
        return 0
    text, lines = run(args)
    stem = args.name or "step_cost_" + args.size.replace("/", "").replace("-", "_")
    common.write_text(args.out / f"{stem}.md", text)
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
