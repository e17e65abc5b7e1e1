"""One-GPU benchmark of the DiT-B/2 rows: training-step cost and throughput.

Step cost (DiT-B/2 on 32x32x4 latents, 1000 classes, bf16 autocast, fused AdamW): flow
matching, SoFlow without guidance (imagenet256 preset, cfg_scale 1), SoFlow with guidance
(cfg_scale 3) and MeanFlow through torch.func.jvp, all on the same batch; time per step
(interleaved rounds, medians, CUDA-synchronised) and peak CUDA memory of one step
(torch.cuda.max_memory_allocated above the pre-step level, after warm-up steps). Also
counts host-device synchronisations inside one SoFlow step (torch.cuda sync debug mode).

Throughput (DiT-B/2): forward and forward+backward images/s, eager vs torch.compile, fp32
(TF32 matmuls off) vs bf16 autocast, and the attention kernel the profiler saw.

The whole run keeps to a time budget (--budget-s, default 210 s, to finish within 4
minutes on one H100): a variant that would start after the budget is skipped and marked so.
Tables are printed and written to benchmarks/results/gpu_step_cost.md and gpu_throughput.md.

    python benchmarks/gpu_bench.py            # one CUDA GPU
    python benchmarks/gpu_bench.py --smoke    # tiny sizes on the CPU: checks that the script runs
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets OMP_WAIT_POLICY before torch starts; puts the checkout on sys.path)

import torch  # noqa: E402

from soflow_mini import build_dit  # noqa: E402
from step_cost import build_model  # noqa: E402  (the same models as the CPU step-cost rows)

ROOT = common.ROOT

START = time.perf_counter()


# ---------------------------------------------------------------------- small helpers
def elapsed() -> float:
    return time.perf_counter() - START


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict, repeats: int, device: torch.device, warmup: int = 1) -> dict[str, list[float]]:
    return common.interleaved_times(fns, repeats=repeats, warmup=warmup, sync=lambda: sync(device))


def paired(times, a, b) -> float:
    return common.paired_ratio(times, a, b)[0]


def header(title: str, device: torch.device) -> str:
    extra = f"- CUDA {torch.version.cuda}\n" if device.type == "cuda" else ""
    return common.header(title, device.type) + extra


# ---------------------------------------------------------------------- step cost
VARIANTS = {
    "flow_matching": "flow matching",
    "soflow": "SoFlow (imagenet256, cfg_scale 1)",
    "soflow_guided": "SoFlow + guidance (cfg_scale 3)",
    "meanflow": "MeanFlow (JVP without graph + forward with gradient)",
    "meanflow_autograd": "MeanFlow (one JVP recorded by autograd)",
}


def make_step(model, batch: int, device: torch.device, bf16: bool, attention=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, 32, 32, generator=g).to(device)
    y = torch.randint(0, 1000, (batch,), generator=g).to(device)
    fused = device.type == "cuda" or None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, fused=fused)
    gen = torch.Generator(device).manual_seed(1)
    k = [0]

    def step():
        ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        with ctx, (attention() if attention else contextlib.nullcontext()):
            loss, _ = model.loss(x, y, step=k[0], total_steps=1000, generator=gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)  # gradients do not outlive the step (as in soflow_mini.train)
        k[0] += 1

    return step


def math_attention():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def peak_memory(step, device: torch.device) -> float:
    """Bytes above the pre-step allocation at the peak of one step (CUDA); NaN on a CPU."""
    if device.type != "cuda":
        return float("nan")
    sync(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    return float(torch.cuda.max_memory_allocated(device) - base)


def count_syncs(step, device: torch.device) -> str:
    """Host-device synchronisations in one step, from torch.cuda's sync debug mode."""
    if device.type != "cuda":
        return "n/a (CPU)"
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    found = [str(w.message).splitlines()[0] for w in caught
             if "synchroniz" in str(w.message).lower() and "prototype feature" not in str(w.message)]
    return str(len(found)) + (f" ({found[0][:80]})" if found else "")


def step_cost(args, device: torch.device) -> str:
    steps, notes, memory = {}, [], {}
    for v in VARIANTS:
        try:
            model = build_model(v, args.size, 1000).to(device)
            step = make_step(model, args.batch, device, args.bf16)
            try:
                step()
            except (RuntimeError, NotImplementedError) as err:  # e.g. an attention kernel without forward-mode AD
                notes.append(f"{VARIANTS[v]}: failed with the default attention ({str(err).splitlines()[0][:120]}); "
                             "rerun with the math SDPA backend")
                step = make_step(model, args.batch, device, args.bf16, attention=math_attention)
                step()
            step()
            memory[v] = peak_memory(step, device)
            steps[v] = step
        except Exception as err:  # keep the other rows: one failure must not cost the whole GPU run
            notes.append(f"{VARIANTS[v]}: FAILED ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})")
            if device.type == "cuda":
                torch.cuda.empty_cache()
    syncs = count_syncs(steps["soflow_guided"], device) if "soflow_guided" in steps else "n/a"
    times = interleaved(steps, args.repeats, device, warmup=0)

    def ratio(a, b):
        return paired(times, a, b) if a in times and b in times else float("nan")

    def mem(a, b=None):
        if a not in memory or (b is not None and b not in memory):
            return float("nan")
        return memory[a] / (memory[b] if b else 2**20)

    rows = [[VARIANTS[v], 1e3 * statistics.median(times[v]), ratio(v, "flow_matching"), ratio(v, "meanflow"),
             mem(v), mem(v, "flow_matching"), mem(v, "meanflow")] for v in steps]
    r_mf, r_fm, m_mf = ratio("soflow", "meanflow"), ratio("soflow", "flow_matching"), mem("soflow", "meanflow")
    lines = []
    for value, bound, what in ((r_mf, 0.8, "step time SoFlow <= 0.8x MeanFlow"),
                               (r_fm, 1.35, "step time SoFlow <= 1.35x flow matching"),
                               (m_mf, 0.8, "peak memory SoFlow <= 0.8x MeanFlow")):
        if value == value:
            lines.append(f"TARGET {'met' if value <= bound else 'MISSED'}: {args.size} {what} ({value:.3f}x)")
    text = (header(f"GPU training-step cost, {args.size}", device)
            + f"- Setting: {args.size}, 32x32x4 latents, 1000 classes, batch {args.batch}, "
            f"{'bf16 autocast' if args.bf16 else 'fp32'}, AdamW {'fused' if device.type == 'cuda' else '(default)'}; "
            f"{args.repeats} interleaved rounds, medians; peak memory: max_memory_allocated above the pre-step level\n"
            f"- Host-device syncs inside one guided SoFlow step (sync debug mode): {syncs}\n\n"
            + common.markdown_table(["variant", "ms / step", "time / FM", "time / MeanFlow", "peak step memory (MiB)",
                     "memory / FM", "memory / MeanFlow"], rows)
            + ("\n- note: under CUDA bf16 autocast MeanFlow runs its JVP pass in fp32 (soflow_mini.baselines.meanflow; "
               "the JVP of the math attention's softmax fails on mismatched dtypes), so compare with MeanFlow in fp32 "
               "(--no-bf16)\n" if args.bf16 and device.type == "cuda" and "meanflow" in steps else "")
            + "".join(f"\n- note: {n}" for n in notes)
            + "\n## Targets\n\n" + "".join(f"- {line}\n" for line in lines))
    for line in lines:
        print(line)
    return text


# ---------------------------------------------------------------------- throughput
def attention_kernel(fn) -> str:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        fn()
    names = sorted({e.key for e in prof.key_averages()
                    if any(k in e.key for k in ("scaled_dot_product", "flash", "efficient_attention", "cudnn_attention", "fmha"))})
    names = [n for n in names if n != "aten::scaled_dot_product_attention"] or names
    return ", ".join(n[:70] for n in names[:3]) or "math (no fused attention op)"


def throughput(args, device: torch.device) -> str:
    torch.manual_seed(0)
    rows, skipped = [], []
    variants, kernels, first = {}, {}, {}
    # compiled bf16 before compiled fp32: if the time budget runs out, the training setting stays
    for compiled, bf16 in ((False, False), (False, True), (True, True), (True, False)):
        name = f"{'compile' if compiled else 'eager'} {'bf16' if bf16 else 'fp32'}"
        if compiled and not args.compile:
            skipped.append(f"{name}: --no-compile")
            continue
        if elapsed() > args.budget_s * (0.55 if compiled else 0.8):  # compiling costs the most; keep room
            skipped.append(f"{name}: time budget ({elapsed():.0f} s used of {args.budget_s:.0f} s)")
            continue
        try:
            fwd, fwdbwd, first[name] = throughput_variant(args, device, compiled, bf16)
            kernels[name] = attention_kernel(fwd)
        except Exception as err:  # a failed compile must not cost the eager rows
            skipped.append(f"{name}: FAILED ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})")
            continue
        variants[f"{name}|fwd"], variants[f"{name}|fwdbwd"] = fwd, fwdbwd
    times = interleaved(variants, args.repeats, device)
    for name in dict.fromkeys(k.split("|")[0] for k in variants):
        f, b = statistics.median(times[f"{name}|fwd"]), statistics.median(times[f"{name}|fwdbwd"])
        base = "eager fp32" if "eager fp32|fwd" in times else name
        rows.append([name, args.tp_batch / f, paired(times, f"{base}|fwd", f"{name}|fwd"),
                     args.tp_batch / b, paired(times, f"{base}|fwdbwd", f"{name}|fwdbwd"), first[name], kernels[name]])
    return (header(f"GPU throughput, {args.size}", device)
            + f"- Setting: batch {args.tp_batch}, 32x32x4, 1000 classes; TF32 matmuls off (fp32 is true fp32); "
            f"{args.repeats} interleaved rounds, medians; speed-up against eager fp32\n\n"
            + common.markdown_table(["variant", "forward img/s", "speed-up", "fwd+bwd img/s", "speed-up", "first calls (s)",
                     "attention kernel"], rows)
            + "".join(f"\n- skipped: {s}" for s in skipped) + ("\n" if skipped else ""))


def throughput_variant(args, device: torch.device, compiled: bool, bf16: bool):
    """(forward, forward+backward, seconds of the first calls) for one variant."""
    net = build_dit(args.size, 32, 4, 1000).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.tp_batch, 4, 32, 32, generator=g).to(device)
    t = torch.rand(args.tp_batch, generator=g).to(device)
    s = (t.cpu() * torch.rand(args.tp_batch, generator=g)).to(device)
    y = torch.randint(0, 1000, (args.tp_batch,), generator=g).to(device)
    fn = torch.compile(net) if compiled else net

    def fwd(fn=fn, bf16=bf16, x=x, t=t, s=s, y=y):
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            fn(x, t, s, y)

    def fwdbwd(fn=fn, net=net, bf16=bf16, x=x, t=t, s=s, y=y):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = fn(x, t, s, y)
        out.float().mean().backward()
        net.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    fwd(), fwdbwd()
    sync(device)
    return fwd, fwdbwd, time.perf_counter() - t0


# ---------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, to check that the script runs")
    parser.add_argument("--size", default=None, help="DiT size (default DiT-B/2; --smoke: DiT-T/4)")
    parser.add_argument("--batch", type=int, default=None, help="step-cost batch (default 64; --smoke: 4)")
    parser.add_argument("--tp-batch", type=int, default=None, help="throughput batch (default 128; --smoke: 4)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="step cost in fp32")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--budget-s", type=float, default=210.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)
        args.size, args.batch = args.size or "DiT-T/4", args.batch or 4
        args.tp_batch, args.repeats = args.tp_batch or 4, args.repeats or 2
        args.out = args.out or ROOT / "benchmarks" / "results" / "smoke"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU: run with --smoke to check the script on a CPU")
        device = torch.device("cuda")
        args.size, args.batch = args.size or "DiT-B/2", args.batch or 64
        args.tp_batch, args.repeats = args.tp_batch or 128, args.repeats or 5
        args.out = args.out or ROOT / "benchmarks" / "results"
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fn in (("gpu_step_cost", step_cost), ("gpu_throughput", throughput)):
        text = fn(args, device)
        (args.out / f"{name}.md").write_text(text)
        print(text)
        print(f"wrote {args.out / (name + '.md')} ({elapsed():.0f} s so far)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
