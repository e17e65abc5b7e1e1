"""Learning-rate and time-distribution sweep of the MeanFlow and consistency-training baselines
in the setting of chapter 8 (2D checkerboard, ToyMLP 128 x 2, batch 256, 700 steps, EMA 0.995).

Chapter 8 compares four methods at one short budget. SoFlow runs with the project's `toy`
preset, tuned on 2D toys; this sweep gives the two one-step baselines the same chance: a small
grid of learning rates and time distributions, one training seed (not one of the chapter's
seeds, so that the chapter's comparison is not evaluated on the run that picked the setting),
each run scored by the excess energy distance of its 1-NFE samples (EMA weights) over the mean
data-vs-data value. The chapter then trains both baselines with the best setting found here.

Time distributions: MeanFlow draws t and r from a logit-normal(mean, std); consistency training
draws its grid pairs from a log-normal over the noise level sigma = t / (1 - t), and
log sigma = logit t, so the same (mean, std) pair is the same distribution of t for both.

Usage: python benchmarks/baseline_sweep.py [--steps 700] [--seed 100] [--samples 5000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets OMP_WAIT_POLICY before torch starts)

import torch  # noqa: E402

from soflow_mini import MeanFlow, SoFlow, SoFlowConfig, ToyMLP, noise_band, sample_toy, train_toy  # noqa: E402
from soflow_mini.baselines import ConsistencyConfig, ConsistencyTraining, MeanFlowConfig  # noqa: E402
from soflow_mini.metrics import energy_distance  # noqa: E402

TOY = "checkerboard"
LRS = (3e-4, 1e-3, 3e-3)
# (mean, std) of logit t: MeanFlow's paper setting, iCT's paper setting, one in between
TIMES = ((-0.4, 1.0), (-1.1, 2.0), (0.0, 1.6))
CURRICULA = (1280, 320, 80)  # iCT's final grid size s1: its paper's, and two shorter curricula


def build(method: str, net: torch.nn.Module, mean: float, std: float, scales_end: int = 1280):
    if method == "MeanFlow":
        return MeanFlow(net, MeanFlowConfig(time_mean=mean, time_std=std))
    if method == "consistency (iCT-style)":
        return ConsistencyTraining(net, ConsistencyConfig(p_mean=mean, p_std=std, scales_end=scales_end))
    return SoFlow(net, SoFlowConfig.preset("toy"))


def run(method: str, lr: float, mean: float, std: float, args, data, held_out, scales_end: int = 1280) -> dict:
    torch.manual_seed(args.seed)
    model = build(method, ToyMLP(width=args.width, depth=args.depth), mean, std, scales_end)
    start = time.perf_counter()
    history = train_toy(model, data, steps=args.steps, batch_size=args.batch, lr=lr, seed=args.seed,
                        ema_decay=args.ema)
    seconds = time.perf_counter() - start
    noise = torch.randn(args.samples, 2, generator=torch.Generator().manual_seed(args.seed + 1))
    energies = {}
    with history.ema.swap_in(model):
        for nfe in (1, 2):
            if method == "MeanFlow":
                x = model.sample(noise, nfe=nfe)
            else:
                x = model.sample(noise, nfe=nfe, generator=torch.Generator().manual_seed(args.seed + 2))
            energies[nfe] = energy_distance(x, held_out)
    return {"method": method, "lr": lr, "time_mean": mean, "time_std": std, "scales_end": scales_end,
            "energy_1": energies[1], "energy_2": energies[2], "train_s": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--seed", type=int, default=100, help="training seed (the chapter uses 0, 1, 2)")
    parser.add_argument("--samples", type=int, default=5000, help="generated and held-out points per metric")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--name", default="baseline_sweep", help="result file stem")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.setup_threads(args.threads)
    head = common.header("Learning rate and time distribution of the one-step baselines (chapter 8 setting)")
    start = time.perf_counter()

    data, _ = sample_toy(TOY, 20000, seed=0)
    held_out, _ = sample_toy(TOY, args.samples, seed=1)
    band = noise_band(lambda n, seed: sample_toy(TOY, n, seed=seed)[0], args.samples, draws=10)
    rows = [run("SoFlow", 1e-3, 0.0, 1.0, args, data, held_out)]  # the reference: the toy preset
    for method in ("MeanFlow", "consistency (iCT-style)"):
        for lr, (mean, std) in itertools.product(LRS, TIMES):
            rows.append(run(method, lr, mean, std, args, data, held_out))
            print(f"{method} lr {lr:g} times ({mean}, {std}): 1-NFE energy {rows[-1]['energy_1']:.4f}", flush=True)
    ct_rows = [r for r in rows if r["method"] == "consistency (iCT-style)"]
    best_ct = min(ct_rows, key=lambda r: r["energy_1"])
    for scales_end in CURRICULA[1:]:  # iCT's curriculum, shortened, at its best (lr, times)
        rows.append(run("consistency (iCT-style)", best_ct["lr"], best_ct["time_mean"], best_ct["time_std"],
                        args, data, held_out, scales_end))
    for r in rows:
        r["excess_1"], r["excess_2"] = r["energy_1"] - band.energy_mean, r["energy_2"] - band.energy_mean
    wall = time.perf_counter() - start

    lines = [head]
    lines.append(
        f"- Setting: {TOY}, ToyMLP(width {args.width}, depth {args.depth}), AdamW, batch {args.batch}, "
        f"{args.steps} steps, EMA {args.ema} with warm-up (samples from the EMA weights), training seed "
        f"{args.seed}; {args.samples} generated vs {args.samples} held-out points; wall time {wall / 60:.1f} min\n"
        f"- Noise band of the energy distance (data vs data, {band.draws} draws of {band.n} points): "
        f"mean {band.energy_mean:.2e}, 2 sd {2 * band.energy_std:.2e}. Cells: energy distance minus that mean "
        f"(lower is better); values within 2 sd of 0 are data-like.\n"
        "- Time distribution (mean, std): of logit t for MeanFlow's (t, r), of log sigma = logit t for the "
        "consistency pairs. Curriculum s1: consistency training's final grid size minus one.\n"
    )
    best = {}
    for method in ("MeanFlow", "consistency (iCT-style)"):
        mine = [r for r in rows if r["method"] == method]
        best[method] = min(mine, key=lambda r: r["excess_1"])
        lines.append(f"## {method}\n")
        curriculum = method != "MeanFlow"
        table = [[f"{r['lr']:g}", f"({r['time_mean']}, {r['time_std']})", *([r["scales_end"]] * curriculum),
                  r["excess_1"], r["excess_2"], r["train_s"]] for r in mine]
        lines.append(common.markdown_table(
            ["learning rate", "time (mean, std)", *(["curriculum s1"] * curriculum), "excess energy, 1 NFE",
             "excess energy, 2 NFE", "train (s)"], table))
    soflow = rows[0]
    lines.append("## Best settings (lowest 1-NFE energy)\n")
    for method, r in best.items():
        lines.append(
            f"- {method}: learning rate {r['lr']:g}, time (mean, std) ({r['time_mean']}, {r['time_std']})"
            + (f", curriculum s1 {r['scales_end']}" if method != "MeanFlow" else "")
            + f": excess energy {r['excess_1']:.4f} at 1 NFE, {r['excess_2']:.4f} at 2 NFE"
        )
    lines.append(
        f"- reference, SoFlow `toy` preset, learning rate 0.001, same seed: excess energy {soflow['excess_1']:.4f} "
        f"at 1 NFE, {soflow['excess_2']:.4f} at 2 NFE\n"
    )
    out = args.out / f"{args.name}.md"
    common.write_text(out, "\n".join(lines))
    common.write_text(args.out / f"{args.name}.json", json.dumps({"rows": rows, "best": best}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
