"""Run every benchmark and collect the target lines (``make bench``).

Default: CPU-sized settings, a few minutes on an idle 2-core machine; results go to
benchmarks/results/quick/ so that the committed full results stay as they are.
--full: the reported settings (hours on a 2-core CPU; run it in the background with nice),
results in benchmarks/results/. --book adds the book's execution time (about as long as
the book takes to run); --compile adds torch.compile variants (minutes of compilation).

    python benchmarks/run_all.py                 # = make bench
    python benchmarks/run_all.py --book          # = make bench BENCH_ARGS=--book
    nice python benchmarks/run_all.py --full --compile --book
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent


def plan(args) -> list[list[str]]:
    out = ["--out", str(args.out)]
    if args.full:
        runs = [
            ["toy_quality.py", "--full", "--workers", "2", "--resume"],
            ["toy_quality.py", "--full", "--presets-only", "--workers", "2", "--resume"],
            ["step_cost.py", "--size", "DiT-T/2", "--batch", "16", "--repeats", "9"],
            ["step_cost.py", "--size", "DiT-S/4", "--batch", "32", "--repeats", "9"],
            ["throughput.py", "--sizes", "DiT-T/2", "DiT-S/4", "DiT-S/2", "--batch", "16"] + ([] if args.compile else ["--no-compile"]),
            ["optimizations.py"] + (["--compile"] if args.compile else []),
            ["gpu_bench.py", "--smoke", "--no-compile"],
        ]
    else:
        runs = [
            ["toy_quality.py"],
            ["step_cost.py", "--repeats", "5"],
            ["throughput.py", "--sizes", "DiT-T/2"] + ([] if args.compile else ["--no-compile"]),
            ["optimizations.py", "--repeats", "5", "--inner", "3", "--thread-rounds", "2", "--thread-steps", "10"]
            + (["--compile"] if args.compile else []),
        ]
    runs = [[r[0]] + r[1:] + (out if r[0] != "gpu_bench.py" else []) for r in runs]
    if args.book:
        runs.append(["book_time.py", "--out", str(args.out)] + (["--nbval"] if args.full else []))
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--book", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.out = args.out or (common.RESULTS if args.full else common.RESULTS / "quick")
    targets, failed, start = [], [], time.perf_counter()
    for run in plan(args):
        cmd = [sys.executable, str(HERE / run[0]), *run[1:]]
        print(f"\n=== {' '.join(['python', 'benchmarks/' + run[0], *run[1:]])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            if "USDT:" in line or "gpuGetDeviceCount" in line:  # profiler start-up noise
                continue
            print(line, end="", flush=True)
            if line.startswith("TARGET"):
                targets.append(f"{line.strip()}  [{run[0]}]")
        if proc.wait():
            failed.append(run[0])
        print(f"=== {run[0]}: {time.perf_counter() - t0:.0f} s, exit {proc.returncode}", flush=True)
    total = time.perf_counter() - start
    summary = (common.header("Benchmark summary") + f"- Total time {total / 60:.1f} min\n\n## Targets\n\n"
               + "".join(f"- {t}\n" for t in targets)
               + ("".join(f"- FAILED: {f}\n" for f in failed)))
    common.write_text(args.out / "summary.md", summary)
    print("\n" + "\n".join(targets))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
