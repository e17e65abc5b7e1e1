"""Does SoFlow's toy recipe get better with training? One-step quality against training length.

Each variant of the recipe (loss settings, ToyMLP time scale, learning-rate schedule, EMA
decay) trains SoFlow from the same initial weights for each training length in --steps,
on the toys and seeds given, and samples 1 and 2 NFE from the EMA weights. Quality: energy
distance of --samples generated points against as many held-out points, minus the mean of
the data-vs-data noise band (10 draws at the same size), and sliced W2 minus its floor.
Flow matching (Euler and Heun) trained for the same lengths is the reference curve.

The record is saved after every run (--resume continues it), so a long sweep survives an
interruption.

    python benchmarks/toy_recipe.py --toys 8gaussians --steps 1000 4000 --variants base cosine
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets OMP_WAIT_POLICY before torch starts)

import torch  # noqa: E402

from soflow_mini import FlowMatching, SoFlow, SoFlowConfig, ToyMLP, noise_band, sample_toy, train_toy  # noqa: E402
from soflow_mini.metrics import sliced_wasserstein2  # noqa: E402
from toy_quality import Energy  # noqa: E402

# name -> (loss overrides of the toy preset, ToyMLP kwargs, train_toy kwargs)
VARIANTS = {
    "base": ({}, {}, {}),
    "cosine": ({}, {}, {"lr_schedule": "cosine", "warmup_steps": 100}),
    "r_end_0.1": ({"l_end_ratio": 0.1}, {}, {}),
    "const_r_0.1": ({"l_schedule": "const", "l_end_ratio": 0.1}, {}, {}),
    "time_scale_10": ({}, {"time_scale": 10.0}, {}),
    "time_scale_10_cosine": ({}, {"time_scale": 10.0}, {"lr_schedule": "cosine", "warmup_steps": 100}),
    "cosine_r_end_0.1": ({"l_end_ratio": 0.1}, {}, {"lr_schedule": "cosine", "warmup_steps": 100}),
    "ema_0.9999": ({}, {}, {"ema_decay": 0.9999}),
    "flow_matching": (None, {}, {}),
}
FM_SOLVERS = (("euler", 8), ("euler", 16), ("heun", 4), ("euler", 100))  # (solver, steps)


def run(variant: str, toy: str, steps: int, seed: int, args, energy: Energy, band) -> dict:
    loss_over, net_kw, train_kw = VARIANTS[variant]
    torch.manual_seed(seed)
    net = ToyMLP(**net_kw)
    model = FlowMatching(net) if loss_over is None else SoFlow(
        net, dataclasses.replace(SoFlowConfig.preset("toy"), **loss_over))
    data = sample_toy(toy, 100_000, seed=1000 + seed)[0]
    kw = {"ema_decay": 0.999, **train_kw}
    start = time.perf_counter()
    ema = train_toy(model, data, steps=steps, batch_size=512, lr=1e-3, seed=seed, **kw).ema
    seconds = time.perf_counter() - start
    noise = torch.randn(args.samples, 2, generator=torch.Generator().manual_seed(5000 + seed))
    out = {"train_s": seconds}
    with torch.no_grad(), ema.swap_in(model):
        if loss_over is None:
            samples = {f"FM {s} {n}": model.sample(noise, steps=n, solver=s) for s, n in FM_SOLVERS}
        else:
            samples = {f"{nfe}-NFE": model.sample(noise, nfe=nfe, generator=torch.Generator().manual_seed(seed))
                       for nfe in (1, 2)}
    for name, x in samples.items():
        out[name] = {"energy": energy(x) - band.energy_mean,
                     "sw2": sliced_wasserstein2(x, energy.ref.float()) - band.sliced_w2_mean}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toys", nargs="+", default=["8gaussians"])
    parser.add_argument("--steps", nargs="+", type=int, default=[1000, 2000, 4000])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--variants", nargs="+", default=["base", "flow_matching"], choices=list(VARIANTS))
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--name", default="toy_recipe")
    parser.add_argument("--resume", action="store_true")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.setup_threads(args.threads)
    record_path = args.out / f"{args.name}.json"
    record = json.loads(record_path.read_text()) if args.resume and record_path.exists() else {"runs": {}}
    record["command"] = common.command_line()
    for toy in args.toys:
        ref = sample_toy(toy, args.samples, seed=777)[0]
        energy = Energy(ref)
        band = noise_band(lambda n, s: sample_toy(toy, n, seed=s)[0], args.samples, draws=10)
        record.setdefault("bands", {})[toy] = dataclasses.asdict(band)
        for variant in args.variants:
            for steps in args.steps:
                for seed in args.seeds:
                    key = f"{toy}|{variant}|{steps}|{seed}"
                    if key in record["runs"]:
                        continue
                    record["runs"][key] = run(variant, toy, steps, seed, args, energy, band)
                    print(key, json.dumps(record["runs"][key]), flush=True)
                    args.out.mkdir(parents=True, exist_ok=True)
                    record_path.write_text(json.dumps(record, indent=1))
    write_table(record, args.out / f"{args.name}.md")
    return 0


def _mean_spread(values: list[float]) -> str:
    """'mean +- std [n]' of one cell of the table (no spread for a single seed)."""
    v = torch.tensor(values, dtype=torch.float64)
    spread = f" +- {v.std().item():.4f}" if len(v) > 1 else ""
    return f"{v.mean().item():.4f}{spread} [{len(v)}]"


def write_table(record: dict, path: Path) -> None:
    rows = {}
    for key, res in record["runs"].items():
        toy, variant, steps, seed = key.split("|")
        for metric, value in res.items():
            if metric != "train_s":
                rows.setdefault((toy, variant, metric), {}).setdefault(int(steps), []).append(value["energy"])
    all_steps = sorted({int(k.split("|")[2]) for k in record["runs"]})
    lines = [common.header("SoFlow toy recipe against training length"),
             "Excess energy distance (value minus the mean of the data-vs-data noise band at the same size), "
             "mean +- standard deviation over seeds [n seeds]. Noise band (2 std) per toy: "
             + ", ".join(f"{t} +-{2 * b['energy_std']:.1e}" for t, b in record.get("bands", {}).items()) + ".\n"]
    table = []
    for (toy, variant, metric), by_steps in sorted(rows.items()):
        table.append([toy, variant, metric] + [
            (_mean_spread(v) if (v := by_steps.get(s)) else "") for s in all_steps])
    lines.append(common.markdown_table(["toy", "variant", "sampler"] + [f"{s} steps" for s in all_steps], table))
    common.write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
