"""Sample quality versus NFE on 2D toys: SoFlow, MeanFlow and flow matching side by side.

Every method trains the same ToyMLP from the same initialisation with
``train_toy`` (AdamW, same learning rate, batch and minibatch stream) and its EMA of the
weights (decay 0.999 with warm-up; samples come from the EMA weights, as the spec asks of
SoFlow sampling, for every method), at equal training steps and at equal training
wall-clock. Then:

- SoFlow at 1 and 2 NFE, MeanFlow at 1 and 2 NFE, flow matching with Euler at 1, 2, 4, 8,
  16 and 100 steps, each drawing ``--samples`` points from the same noise;
- energy distance and sliced W2 to ``--samples`` held-out data points, reported as the
  excess over the data-vs-data floor (two independent data samples of that size);
- mean and spread (sample standard deviation) over ``--seeds``.

Equal wall-clock: the budget is SoFlow's training time at ``--steps``; every method gets
budget / (its time per step) steps, with the times per step measured side by side in this
run (interleaved rounds of short training calls, medians). Measuring the budget this way
keeps it meaningful on a shared machine, where the wall time of a single run is noise.

    python benchmarks/toy_quality.py                 # quick: checkerboard, 1 seed, small MLP (~2 min)
    python benchmarks/toy_quality.py --full          # 3 toys x 3 seeds, ToyMLP(256, 4), 2000 steps, 20k samples
    python benchmarks/toy_quality.py --full --presets-only   # toy vs published loss settings on the toys
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets OMP_WAIT_POLICY before torch starts)

import torch  # noqa: E402

from soflow_mini import (  # noqa: E402
    EMA, FlowMatching, MeanFlow, SoFlow, SoFlowConfig, ToyMLP, sample_toy, sliced_wasserstein2, train_toy,
)
from soflow_mini.metrics import _mean_distance  # noqa: E402

FM_STEPS = (1, 2, 4, 8, 16, 100)
NFES = (1, 2)
METHODS = ("soflow", "meanflow", "flow_matching")
PRESET_NAMES = ("toy", "imagenet256", "cifar10")


@dataclass
class Setting:
    toys: list[str]
    seeds: list[int]
    steps: int
    samples: int
    train_points: int
    width: int
    depth: int
    batch: int
    lr: float
    preset: str = "toy"
    ema: float = 0.999
    cost_rounds: int = 7
    cost_steps: int = 10


@dataclass
class Job:
    """Train one method on one toy and seed for ``steps`` steps, then score its samples."""

    toy: str
    seed: int
    method: str
    steps: int
    budget: str  # "steps", "wallclock", or "both" (SoFlow: its run defines the budget)
    setting: Setting
    preset: str = "toy"
    ref_self: float = 0.0  # E|Y - Y'| of the held-out reference, computed once per toy
    results: dict = field(default_factory=dict)


# ---------------------------------------------------------------------- models and data
def make_model(method: str, setting: Setting, seed: int, preset: str = "toy") -> torch.nn.Module:
    torch.manual_seed(seed)  # same initialisation for every method
    net = ToyMLP(width=setting.width, depth=setting.depth)
    if method == "soflow":
        return SoFlow(net, SoFlowConfig.preset(preset))
    if method == "meanflow":
        return MeanFlow(net)
    if method == "flow_matching":
        return FlowMatching(net)
    raise ValueError(method)


def train_data(toy: str, setting: Setting, seed: int) -> torch.Tensor:
    return sample_toy(toy, setting.train_points, seed=1000 + seed)[0]


def reference(toy: str, setting: Setting) -> torch.Tensor:
    return sample_toy(toy, setting.samples, seed=777)[0]  # held out: no training seed is 777 + 1000k


def floor_sample(toy: str, setting: Setting) -> torch.Tensor:
    return sample_toy(toy, setting.samples, seed=778)[0]


def noise_for(toy: str, setting: Setting, seed: int) -> torch.Tensor:
    return torch.randn(setting.samples, 2, generator=torch.Generator().manual_seed(5000 + seed))


class Energy:
    """Energy distance to a fixed reference; its within-reference term is computed once.

    Same formula as ``soflow_mini.energy_distance``: 2 E|X - Y| - E|X - X'| - E|Y - Y'|."""

    def __init__(self, ref: torch.Tensor, ref_self: float | None = None):
        self.ref = ref.double()
        self.ref_self = float(_mean_distance(self.ref, self.ref, same=True)) if ref_self is None else ref_self

    def __call__(self, x: torch.Tensor) -> float:
        x = x.double()
        return float(2 * _mean_distance(x, self.ref, same=False) - _mean_distance(x, x, same=True)) - self.ref_self


# ---------------------------------------------------------------------- training
def train(model: torch.nn.Module, data: torch.Tensor, setting: Setting, steps: int, seed: int) -> EMA:
    """soflow_mini.train_toy with an EMA of the weights (decay ``setting.ema``, warm-up on); returns the EMA."""
    return train_toy(model, data, steps=steps, batch_size=setting.batch, lr=setting.lr, seed=seed,
                     ema_decay=setting.ema).ema


# ---------------------------------------------------------------------- one job
def run_job(job: Job) -> Job:
    common.setup_threads(1)
    setting = job.setting
    data = train_data(job.toy, setting, job.seed)
    model = make_model(job.method, setting, job.seed, job.preset)
    start = time.perf_counter()
    ema = train(model, data, setting, job.steps, job.seed)
    train_s = time.perf_counter() - start
    energy = Energy(reference(job.toy, setting), job.ref_self)
    ref = energy.ref.float()
    noise = noise_for(job.toy, setting, job.seed)
    samples = {}
    with torch.no_grad(), ema.swap_in(model):  # sample with the averaged weights
        if job.method == "soflow":
            for nfe in NFES:
                samples[f"SoFlow {nfe}-NFE"] = model.sample(noise, nfe=nfe, generator=torch.Generator().manual_seed(job.seed))
        elif job.method == "meanflow":
            for nfe in NFES:
                samples[f"MeanFlow {nfe}-NFE"] = model.sample(noise, nfe=nfe)
        else:
            for k in FM_STEPS:
                samples[f"FM Euler {k}"] = model.sample(noise, steps=k, solver="euler")
    for name, x in samples.items():
        job.results[name] = {"energy": energy(x), "sw2": sliced_wasserstein2(x, ref)}
    job.results["_train_s"] = train_s
    return job


# ---------------------------------------------------------------------- step cost
def measure_step_costs(setting: Setting, methods=METHODS) -> dict[str, dict]:
    """Seconds per training step (``train``) of each method, interleaved rounds, medians."""
    common.setup_threads(1)
    data = train_data(setting.toys[0], setting, 0)
    models = {m: make_model(m, setting, 0) for m in methods}
    n = setting.cost_steps

    def runner(m):
        return lambda: train(models[m], data, setting, n, 0)

    times = common.interleaved_times({m: runner(m) for m in methods}, repeats=setting.cost_rounds)
    out = {}
    for m in methods:
        ratio, lo, hi = common.paired_ratio(times, m, "soflow")
        out[m] = {"s_per_step": common.median(times[m]) / n, "vs_soflow": ratio, "vs_soflow_iqr": (lo, hi)}
    return out


# ---------------------------------------------------------------------- the sweep
def sweep(setting: Setting, workers: int, *, presets_only: bool = False, save=None, previous: dict | None = None,
          reuse: dict | None = None, log=print) -> dict:
    """Run every job of the sweep; ``save(record)`` is called after each finished job, and
    jobs already in ``previous`` (a partial record of the same setting) are not rerun."""
    t0 = time.perf_counter()
    if previous is not None:
        floors, costs, ref_self = previous["floors"], previous["costs"], previous["ref_self"]
    elif presets_only and reuse is not None and all(toy in reuse["floors"] for toy in setting.toys):
        floors, ref_self, costs = reuse["floors"], reuse["ref_self"], None  # same held-out data and floor samples
    else:
        floors, ref_self = {}, {}
        for toy in setting.toys:
            energy = Energy(reference(toy, setting))
            ref_self[toy] = energy.ref_self
            other = floor_sample(toy, setting)
            floors[toy] = {"energy": energy(other), "sw2": sliced_wasserstein2(other, energy.ref.float())}
            log(f"floor {toy}: energy {floors[toy]['energy']:.2e}, sliced W2 {floors[toy]['sw2']:.4f}")
        costs = None if presets_only else measure_step_costs(setting)
    if costs:
        for m, c in costs.items():
            log(f"step cost {m}: {1e3 * c['s_per_step']:.2f} ms/step, {c['vs_soflow']:.3f}x SoFlow")

    jobs: list[Job] = []
    for seed in setting.seeds:  # seed-major: every toy gets its first seed early
        for toy in setting.toys:
            if presets_only:
                for preset in PRESET_NAMES:
                    jobs.append(Job(toy, seed, "soflow", setting.steps, preset, setting, preset, ref_self[toy]))
                continue
            wc = {m: max(1, round(setting.steps / costs[m]["vs_soflow"])) for m in METHODS}
            jobs.append(Job(toy, seed, "soflow", setting.steps, "both", setting, setting.preset, ref_self[toy]))
            for m in ("flow_matching", "meanflow"):
                jobs.append(Job(toy, seed, m, setting.steps, "steps", setting, setting.preset, ref_self[toy]))
                jobs.append(Job(toy, seed, m, wc[m], "wallclock", setting, setting.preset, ref_self[toy]))
    record = {"setting": asdict(setting), "floors": floors, "costs": costs, "ref_self": ref_self, "jobs": [],
              "elapsed_s": 0.0}
    done_keys = set()
    if previous is not None:
        record["jobs"] = list(previous["jobs"])
        record["elapsed_s"] = previous.get("elapsed_s", 0.0)
        done_keys = {_key(j) for j in previous["jobs"]}
    if presets_only and reuse is not None:  # the toy-preset runs of the main sweep are the same runs
        for job in reuse["jobs"]:
            if job["method"] == "soflow" and job["preset"] == "toy" and job["seed"] in setting.seeds \
                    and job["toy"] in setting.toys and (job["toy"], job["seed"], "soflow", "toy", "toy") not in done_keys:
                record["jobs"].append(dict(job, budget="toy", reused_from="toy_quality.json"))
                done_keys.add((job["toy"], job["seed"], "soflow", "toy", "toy"))
    todo = [j for j in jobs if _key(_job_record(j)) not in done_keys]
    elapsed0 = record["elapsed_s"]

    def finish(job: Job) -> None:
        record["jobs"].append(_job_record(job))
        record["elapsed_s"] = elapsed0 + time.perf_counter() - t0
        log(_job_line(job, len(record["jobs"]), len(jobs)))
        if save is not None:
            save(record)

    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_job, j) for j in todo]):
                finish(future.result())
    else:
        for job in todo:
            finish(run_job(job))
    return record


def _key(job: dict) -> tuple:
    return (job["toy"], job["seed"], job["method"], job["budget"], job["preset"])


def _job_line(job: Job, i: int, n: int) -> str:
    first = next(k for k in job.results if not k.startswith("_"))
    return (f"[{i}/{n}] {job.toy} seed {job.seed} {job.method} ({job.preset}, {job.budget}, {job.steps} steps, "
            f"{job.results['_train_s']:.0f} s): {first} energy {job.results[first]['energy']:.4f}")


def _job_record(job: Job) -> dict:
    return {"toy": job.toy, "seed": job.seed, "method": job.method, "steps": job.steps, "budget": job.budget,
            "preset": job.preset, "results": job.results}


# ---------------------------------------------------------------------- tables
ROW_ORDER = [f"SoFlow {n}-NFE" for n in NFES] + [f"MeanFlow {n}-NFE" for n in NFES] + [f"FM Euler {k}" for k in FM_STEPS]


def collect(record: dict, budget: str, preset: str | None = None) -> dict:
    """{toy: {row: {metric: [excess per seed]}}} for one budget ("steps" or "wallclock")."""
    floors = record["floors"]
    out: dict = {}
    for job in record["jobs"]:
        if job["budget"] not in (budget, "both") or (preset is not None and job["preset"] != preset):
            continue
        rows = out.setdefault(job["toy"], {})
        for name, vals in job["results"].items():
            if name.startswith("_"):
                continue
            cell = rows.setdefault(name, {"energy": [], "sw2": [], "steps": job["steps"]})
            for metric in ("energy", "sw2"):
                cell[metric].append(vals[metric] - floors[job["toy"]][metric])
    return out


def mean_sd(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    return m, (statistics.stdev(values) if len(values) > 1 else float("nan"))


def fmt(values: list[float]) -> str:
    m, sd = mean_sd(values)
    return f"{m:.4f}" if math.isnan(sd) else f"{m:.4f} ± {sd:.4f}"


def quality_tables(record: dict) -> str:
    steps = collect(record, "steps")
    wall = collect(record, "wallclock")
    text = []
    for toy in record["setting"]["toys"]:
        f = record["floors"][toy]
        text.append(f"\n## {toy}\n\nData-vs-data floor ({record['setting']['samples']} vs "
                    f"{record['setting']['samples']} points): energy {f['energy']:.2e}, sliced W2 {f['sw2']:.4f}. "
                    "Cells: excess over the floor, mean ± sd over seeds (lower is better).\n\n")
        rows = []
        for name in ROW_ORDER:
            a, b = steps.get(toy, {}).get(name), wall.get(toy, {}).get(name)
            if a is None or b is None:
                continue
            rows.append([name, a["steps"], fmt(a["energy"]), fmt(a["sw2"]), b["steps"], fmt(b["energy"]), fmt(b["sw2"])])
        text.append(common.markdown_table(
            ["method", "train steps", "energy (equal steps)", "sliced W2 (equal steps)",
             "train steps (equal time)", "energy (equal time)", "sliced W2 (equal time)"], rows))
    return "".join(text)


def cost_table(record: dict) -> str:
    costs = record["costs"]
    rows = [[m, 1e3 * c["s_per_step"], f"{c['vs_soflow']:.3f} [{c['vs_soflow_iqr'][0]:.3f}, {c['vs_soflow_iqr'][1]:.3f}]"]
            for m, c in costs.items()]
    return ("\n## Training cost per step (ToyMLP, measured side by side)\n\n"
            + common.markdown_table(["method", "ms / step (median)", "time / SoFlow's (median [IQR] of paired rounds)"], rows))


def targets(record: dict) -> list[str]:
    """The issue's targets, per toy, on the mean excess energy distance and sliced W2."""
    steps, wall = collect(record, "steps"), collect(record, "wallclock")
    lines = []
    checks = [
        ("SoFlow 1-NFE <= FM Euler 8 steps", "SoFlow 1-NFE", "FM Euler 8", 1.0, ("steps", "wallclock")),
        ("SoFlow 2-NFE <= FM Euler 16 steps", "SoFlow 2-NFE", "FM Euler 16", 1.0, ("steps", "wallclock")),
        ("SoFlow 1-NFE <= 0.5x MeanFlow 1-NFE", "SoFlow 1-NFE", "MeanFlow 1-NFE", 0.5, ("wallclock", "steps")),
        ("stretch: SoFlow 1-NFE <= 1.5x FM Euler 100 steps", "SoFlow 1-NFE", "FM Euler 100", 1.5, ("steps", "wallclock")),
    ]
    tables = {"steps": steps, "wallclock": wall}
    for toy in record["setting"]["toys"]:
        for name, a, b, bound, budgets in checks:
            parts, met_all = [], True
            for budget in budgets:
                t = tables[budget].get(toy, {})
                if a not in t or b not in t:
                    continue
                ratios = {m: _ratio(statistics.fmean(t[a][m]), statistics.fmean(t[b][m])) for m in ("energy", "sw2")}
                # an excess at or below zero is at the floor: count it as met when the rival's is not lower
                ok = {m: statistics.fmean(t[a][m]) <= bound * statistics.fmean(t[b][m]) or statistics.fmean(t[a][m]) <= 0
                      for m in ratios}
                met = all(ok.values())
                if budget == budgets[0]:
                    met_all = met
                label = "equal steps" if budget == "steps" else "equal wall-clock"
                parts.append(f"{label}: energy {ratios['energy']}, sliced W2 {ratios['sw2']}"
                             + ("" if budget == budgets[0] else f" [{'met' if met else 'missed'}]"))
            if parts:
                lines.append(common.target_line(f"{toy}: {name} at {parts[0].split(':')[0]}", met_all, "; ".join(parts)))
    return lines


def _ratio(a: float, b: float) -> str:
    """a / b as text; an excess b at or below the floor (sampling noise) has no meaningful ratio."""
    if b <= 0:
        return f"n/a (rival at the floor; {a:.2e} vs {b:.2e})"
    return f"{a / b:.2f}x"


def presets_table(record: dict) -> str:
    text = ["\n## SoFlow loss settings on the toys (1 and 2 NFE, excess energy distance and sliced W2)\n\n"
            "`imagenet256` runs with cfg_scale 1 (no labels on the toys, so guidance is off either way).\n\n"]
    rows = []
    for toy in record["setting"]["toys"]:
        for preset in PRESET_NAMES:
            t = collect(record, preset, preset).get(toy, {})
            if not t:
                continue
            rows.append([toy, preset, fmt(t["SoFlow 1-NFE"]["energy"]), fmt(t["SoFlow 2-NFE"]["energy"]),
                         fmt(t["SoFlow 1-NFE"]["sw2"]), fmt(t["SoFlow 2-NFE"]["sw2"])])
    text.append(common.markdown_table(
        ["toy", "preset", "energy 1-NFE", "energy 2-NFE", "sliced W2 1-NFE", "sliced W2 2-NFE"], rows))
    return "".join(text)


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    toys = record["setting"]["toys"]
    fig, axes = plt.subplots(2, len(toys), figsize=(4.2 * len(toys), 7), squeeze=False)
    for col, toy in enumerate(toys):
        for row, metric in enumerate(("energy", "sw2")):
            ax = axes[row, col]
            for budget, style in (("steps", "-"), ("wallclock", "--")):
                t = collect(record, budget).get(toy, {})
                label = "equal steps" if budget == "steps" else "equal wall-clock"
                fm = [(k, *mean_sd(t[f"FM Euler {k}"][metric])) for k in FM_STEPS if f"FM Euler {k}" in t]
                if fm:
                    ax.errorbar([k for k, _, _ in fm], [m for _, m, _ in fm], yerr=[0 if math.isnan(s) else s for _, _, s in fm],
                                fmt="o" + style, color="C0", alpha=1.0 if budget == "steps" else 0.6,
                                label=f"flow matching, Euler ({label})", capsize=2)
                for method, color in (("SoFlow", "C3"), ("MeanFlow", "C2")):
                    pts = [(n, *mean_sd(t[f"{method} {n}-NFE"][metric])) for n in NFES if f"{method} {n}-NFE" in t]
                    if pts:
                        ax.errorbar([n for n, _, _ in pts], [m for _, m, _ in pts], yerr=[0 if math.isnan(s) else s for _, _, s in pts],
                                    fmt="s" + style, color=color, alpha=1.0 if budget == "steps" else 0.6,
                                    label=f"{method} ({label})", capsize=2)
            ax.set_xscale("log")
            ax.set_yscale("symlog", linthresh=1e-3 if metric == "energy" else 1e-2)
            ax.set_ylim(bottom=0)  # an excess below 0 is sampling noise around the floor
            ax.set_xlabel("NFE")
            ax.set_ylabel({"energy": "excess energy distance", "sw2": "excess sliced W2"}[metric])
            ax.set_title(toy)
            ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Quality vs NFE: excess over the data floor (mean ± sd over seeds)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


# ---------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the reported setting: 3 toys, 3 seeds, 2000 steps, 20k samples")
    parser.add_argument("--toys", nargs="+", help="toy data sets (default: checkerboard; --full: checkerboard 8gaussians spirals)")
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--samples", type=int, help="generated and held-out points per metric")
    parser.add_argument("--width", type=int)
    parser.add_argument("--depth", type=int)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--preset", default="toy", help="SoFlowConfig preset of the SoFlow runs")
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay (warm-up on) for every method")
    parser.add_argument("--workers", type=int, default=1, help="parallel training processes (1 thread each)")
    parser.add_argument("--presets-only", action="store_true", help="compare the toy, imagenet256 and cifar10 loss settings")
    parser.add_argument("--name", help="result file stem (default: toy_quality[_quick] / toy_presets[_quick])")
    parser.add_argument("--from-json", type=Path, help="rebuild tables and plots from a saved (possibly partial) record")
    parser.add_argument("--resume", action="store_true", help="skip the jobs already in the result file's record")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    common.setup_threads(args.threads)

    full = args.full
    setting = Setting(
        toys=args.toys or (["checkerboard", "8gaussians", "spirals"] if full else ["checkerboard"]),
        seeds=args.seeds or ([0, 1, 2] if full else [0]),
        steps=args.steps or (2000 if full else 600),
        samples=args.samples or (20000 if full else 4000),
        train_points=100_000,
        width=args.width or (256 if full else 128),
        depth=args.depth or (4 if full else 3),
        batch=args.batch, lr=args.lr, preset=args.preset, ema=args.ema,
        cost_rounds=7 if full else 5,
    )
    stem = args.name or ("toy_presets" if args.presets_only else "toy_quality") + ("" if full else "_quick")
    if args.from_json:
        record = json.loads(args.from_json.read_text())
    else:
        json_path = args.out / f"{stem}.json"
        previous = None
        if args.resume and json_path.exists():
            previous = json.loads(json_path.read_text())
            if previous["setting"] != asdict(setting):
                raise SystemExit(f"--resume: {json_path} holds another setting: {previous['setting']}")
        head = common.header("SoFlow loss settings on 2D toys" if args.presets_only else "Quality versus NFE on 2D toys")
        command = common.command_line()

        def save(record: dict) -> None:
            record["command"], record["header"] = command, head
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(record, indent=1))

        reuse = None
        main_json = args.out / ("toy_quality" + ("" if full else "_quick") + ".json")
        if args.presets_only and main_json.exists():
            candidate = json.loads(main_json.read_text())
            same = {k: v for k, v in candidate["setting"].items() if k not in ("toys", "seeds")}
            if same == {k: v for k, v in asdict(setting).items() if k not in ("toys", "seeds")}:
                reuse = candidate
        record = sweep(setting, args.workers, presets_only=args.presets_only, save=save, previous=previous, reuse=reuse)
        save(record)
        print(f"wrote {json_path}")
    s = record["setting"]
    text = [record["header"],
            f"- Setting: ToyMLP(width {s['width']}, depth {s['depth']}), AdamW lr {s['lr']}, batch {s['batch']}, "
            f"{s['steps']} steps (SoFlow; its time is the wall-clock budget), {s['train_points']} training points, "
            f"{s['samples']} generated vs {s['samples']} held-out points, seeds {s['seeds']}, SoFlow preset "
            f"`{s['preset']}`; EMA {s.get('ema', 'none')} with warm-up, samples from the EMA weights (every method); {len(record['jobs'])} training runs, wall time of the "
            f"sweep {record['elapsed_s'] / 60:.1f} min\n"]
    lines = []
    if record.get("costs") is None:
        text.append(presets_table(record))
    else:
        text.append(cost_table(record))
        text.append(quality_tables(record))
        lines = targets(record)
        text.append("\n## Targets\n\n" + "".join(f"- {line}\n" for line in lines))
        plot(record, args.out / f"{stem}.png")
        text.append(f"\n![quality vs NFE]({stem}.png)\n")
    common.write_text(args.out / f"{stem}.md", "".join(text))
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
