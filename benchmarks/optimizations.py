"""Where the SoFlow training step spends its time, and what each optimisation changed.

Sections (each measured side by side in this run):

1. (retired) the SoFlow step before vs after an optimisation that measured no faster and
   was reverted; tests/golden/soflow_step.json now pins the step's results.
2. FLOP shares (torch.utils.flop_counter, exact, no timing noise): the network passes of
   one SoFlow step relative to flow matching, and the share of the time embedders, which
   the guidance pass recomputes for times the gradient pass already embedded.
3. AdamW: for-loop (the CPU default), foreach and fused, on the same SoFlow step.
4. Threads: the toy SoFlow step with 2 threads (default OpenMP wait policy), 2 threads with
   OMP_WAIT_POLICY=PASSIVE, and 1 thread; each in a fresh subprocess, alternated.
5. torch.compile (--compile; minutes on a CPU): eager vs compiled net vs compiled loss,
   and the graph count / graph breaks that dynamo reports for each entry point.

    python benchmarks/optimizations.py              # sections 2-4 (~3 min)
    python benchmarks/optimizations.py --compile    # adds section 5
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets OMP_WAIT_POLICY before torch starts)

import torch  # noqa: E402

from soflow_mini import FlowMatching, SoFlow, SoFlowConfig, ToyMLP, build_dit  # noqa: E402


# ---------------------------------------------------------------------- set-ups
def toy_setup(batch: int = 512):
    torch.manual_seed(0)
    net = ToyMLP(width=256, depth=4)
    x = torch.randn(batch, 2)
    return net, x, None, SoFlowConfig.preset("toy")


def dit_setup(size: str, batch: int, guided: bool):
    torch.manual_seed(0)
    net = build_dit(size, 32, 4, 1000)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, 32, 32, generator=g)
    y = torch.randint(0, 1000, (batch,), generator=g)
    config = SoFlowConfig.preset("imagenet256")
    if not guided:
        config = dataclasses.replace(config, cfg_scale=1.0)
    return net, x, y, config


def make_step(model, x, y, *, optimizer: str = "default", compile_loss: bool = False, generator: bool = True):
    kw = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}, "forloop": {"foreach": False}}[optimizer]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, **kw)
    loss_fn = torch.compile(model.loss) if compile_loss else model.loss
    gen = torch.Generator().manual_seed(0) if generator else None
    k = [0]

    def step():
        loss, _ = loss_fn(x, y, step=k[0], total_steps=1000, generator=gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        k[0] += 1

    return step


def ratio_row(label: str, times: dict, after: str, before: str) -> list:
    r, lo, hi = common.paired_ratio(times, after, before)
    return [label, 1e3 * common.median(times[before]), 1e3 * common.median(times[after]), f"{r:.3f} [{lo:.3f}, {hi:.3f}]"]


# ---------------------------------------------------------------------- 2. FLOP shares
def flop_shares(args) -> str:
    from torch.utils.flop_counter import FlopCounterMode

    rows = []
    for label, (net, x, y, config), fm_kw in [
        ("ToyMLP(256, 4), toy preset", toy_setup(), {}),
        (f"{args.size}, imagenet256, cfg_scale 1", dit_setup(args.size, args.batch, False), {}),
        (f"{args.size}, imagenet256, cfg_scale 3", dit_setup(args.size, args.batch, True), {}),
    ]:
        counts = {}
        for name, model in (("fm", FlowMatching(net)), ("soflow", SoFlow(net, config))):
            with FlopCounterMode(display=False) as counter:
                loss, _ = model.loss(x, y, step=3, total_steps=10, generator=torch.Generator().manual_seed(1))
                loss.backward()
            net.zero_grad(set_to_none=True)
            per_module = counter.get_flop_counts()
            total = counter.get_total_flops()
            embed = sum(sum(v.values()) for k, v in per_module.items()
                        if k.split(".")[-1] in ("t_embedder", "gap_embedder"))
            counts[name] = (total, embed)
        rows.append([label, counts["soflow"][0] / counts["fm"][0], 100 * counts["soflow"][1] / counts["soflow"][0]])
    return ("\n## 2. FLOPs of one training step (exact count, torch.utils.flop_counter)\n\n"
            "SoFlow / flow matching: the extra no-grad passes (x_l at (l, s) on the consistency rows; with guidance "
            "one batched pass for the unconditional velocity of every row and the conditional one of the consistency "
            "rows). Time-embedder share: both embedders (t and t - s), forward and backward, in the SoFlow step: the "
            "most that caching embeddings between passes could save.\n\n"
            + common.markdown_table(["setting", "SoFlow FLOPs / flow matching", "time embedders' share of SoFlow FLOPs (%)"], rows))


# ---------------------------------------------------------------------- 3. AdamW
def adamw(args) -> str:
    rows = []
    for label, (net, x, y, config), inner in [("ToyMLP(256, 4), batch 512", toy_setup(), args.inner),
                                              (f"{args.size}, batch {args.batch}, cfg_scale 1", dit_setup(args.size, args.batch, False), 1)]:
        steps = {opt: make_step(SoFlow(copy.deepcopy(net), config), x, y, optimizer=opt) for opt in ("forloop", "foreach", "fused")}
        times = common.interleaved_times(steps, repeats=args.repeats, inner=inner, warmup=2)
        for opt in ("foreach", "fused"):
            rows.append([label, opt] + ratio_row("", times, opt, "forloop")[1:])
    return ("\n## 3. AdamW implementation (whole SoFlow step)\n\n"
            "`forloop` is what torch.optim.AdamW picks by default for CPU tensors; soflow_mini.train_toy and "
            "soflow_mini.train.Trainer use that default.\n\n"
            + common.markdown_table(["setting", "AdamW", "for-loop ms", "this ms", "this / for-loop"], rows))


# ---------------------------------------------------------------------- 4. threads
THREAD_CHILD = r"""
import os, sys, time, json, statistics, torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, sys.argv[2])
from soflow_mini import SoFlow, SoFlowConfig, ToyMLP
torch.manual_seed(0)
model = SoFlow(ToyMLP(width=256, depth=4), SoFlowConfig.preset("toy"))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
x = torch.randn(512, 2)
def step(k):
    loss, _ = model.loss(x, step=k, total_steps=1000)
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
for k in range(3): step(k)
times = []
for k in range(int(sys.argv[3])):
    t0 = time.perf_counter(); step(k); times.append(time.perf_counter() - t0)
print(json.dumps({"median_s": statistics.median(times)}))
"""


def threads(args) -> str:
    configs = {"2 threads, OMP_WAIT_POLICY unset": ("2", None), "2 threads, OMP_WAIT_POLICY=PASSIVE": ("2", "PASSIVE"),
               "1 thread": ("1", None)}
    times = {k: [] for k in configs}
    load = os.getloadavg()[0]
    for _ in range(args.thread_rounds):
        for name, (n, policy) in configs.items():
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            out = subprocess.run([sys.executable, "-c", THREAD_CHILD, n, str(common.ROOT), str(args.thread_steps)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            times[name].append(json.loads(out.strip().splitlines()[-1])["median_s"])
    base = "2 threads, OMP_WAIT_POLICY unset"
    rows = [[name, 1e3 * common.median(times[name]), common.paired_ratio(times, name, base)[0]] for name in configs]
    return (f"\n## 4. Threads on this shared machine (toy SoFlow step, ToyMLP(256, 4), batch 512)\n\n"
            f"Fresh subprocess per measurement, configurations alternated, {args.thread_rounds} rounds of "
            f"{args.thread_steps} steps; load average {load:.1f} at the start (other users' jobs). torch's default "
            "is one thread per core with OpenMP threads that spin while they wait.\n\n"
            + common.markdown_table(["configuration", "ms / step (median)", "time / default"], rows))


# ---------------------------------------------------------------------- 5. torch.compile
def compile_section(args) -> str:
    import torch._dynamo

    net, x, y, config = toy_setup()
    rows = []
    for label, fn, kwargs in [
        ("ToyMLP forward", net, dict(args=(x, torch.rand(512), torch.rand(512) * 0.5))),
        ("SoFlow.loss, no generator", SoFlow(net, config).loss, dict(kwargs=dict(step=3, total_steps=10))),
        ("SoFlow.loss with a torch.Generator", SoFlow(net, config).loss,
         dict(kwargs=dict(step=3, total_steps=10, generator=torch.Generator().manual_seed(0)))),
        (f"{args.size} forward", dit_setup(args.size, 2, False)[0],
         dict(args=(torch.randn(2, 4, 32, 32), torch.rand(2), torch.rand(2) * 0.5, torch.randint(0, 1000, (2,))))),
    ]:
        call_args = kwargs.get("args", (x,))
        ex = torch._dynamo.explain(fn)(*call_args, **kwargs.get("kwargs", {}))
        reasons = sorted({str(b.reason).splitlines()[0][:90] for b in ex.break_reasons})
        rows.append([label, ex.graph_count, ex.graph_break_count, "; ".join(reasons) or "-"])
    torch._dynamo.reset()
    # recompiles across steps: the step counter feeds the intermediate-time ratio r(k, K)
    import torch._dynamo.testing

    counter = torch._dynamo.testing.CompileCounter()
    f = torch.compile(SoFlow(copy.deepcopy(net), config).loss, backend=counter)
    for k in range(20):
        f(x, step=k, total_steps=20)
    recompiles = counter.frame_count
    torch._dynamo.reset()
    # timing: eager, compiled net, compiled loss (no generator)
    variants = {}
    start = time.perf_counter()
    m_eager = SoFlow(copy.deepcopy(net), config)
    variants["eager"] = make_step(m_eager, x, None, generator=False)
    m_net = SoFlow(copy.deepcopy(net), config)
    m_net.net.compile()
    variants["compiled net"] = make_step(m_net, x, None, generator=False)
    m_loss = SoFlow(copy.deepcopy(net), config)
    variants["compiled loss"] = make_step(m_loss, x, None, compile_loss=True, generator=False)
    for fn in variants.values():
        fn()
    compile_s = time.perf_counter() - start
    times = common.interleaved_times(variants, repeats=args.repeats, inner=args.inner, warmup=2)
    trows = [[name, 1e3 * common.median(times[name]), common.paired_ratio(times, name, "eager")[0]] for name in variants]
    return ("\n## 5. torch.compile\n\nGraphs and graph breaks reported by torch._dynamo.explain:\n\n"
            + common.markdown_table(["entry point", "graphs", "graph breaks", "break reasons"], rows, align="lrrl")
            + "\nWhere no reason is listed, `TORCH_LOGS=graph_breaks` names it: every torch.randn / torch.rand call "
            "that receives a torch.Generator (dynamo cannot put a Generator in a graph). Compile the network "
            "(`model.net.compile()`, as soflow_mini.train does), or compile `SoFlow.loss` called without a generator.\n"

            + f"\nCompiling `SoFlow.loss` and calling it for 20 steps (the step counter changes every call): "
            f"{recompiles} compiled frame(s) (the first call, and one recompile that makes the step counter dynamic).\n\n"
            f"Toy SoFlow step (ToyMLP(256, 4), batch 512, no generator; compilation took {compile_s:.0f} s):\n\n"
            + common.markdown_table(["variant", "ms / step (median)", "time / eager"], trows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="DiT-T/2")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--inner", type=int, default=5, help="toy steps per timed call")
    parser.add_argument("--thread-rounds", type=int, default=3)
    parser.add_argument("--thread-steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="add the torch.compile section (slow on a CPU)")
    parser.add_argument("--sections", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument("--name", default="optimizations")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.setup_threads(args.threads)
    sections = {2: flop_shares, 3: adamw, 4: threads, 5: compile_section}
    chosen = sorted(set(args.sections) | ({5} if args.compile else set()))
    text = [common.header("SoFlow step: profile and optimisations")]
    for k in chosen:
        t0 = time.perf_counter()
        part = sections[k](args)
        text.append(part)
        print(part)
        print(f"(section {k}: {time.perf_counter() - t0:.0f} s)")
    common.write_text(args.out / f"{args.name}.md", "".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
