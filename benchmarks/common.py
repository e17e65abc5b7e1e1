"""Shared helpers of the benchmark scripts: thread set-up, side-by-side timing, result files.

Every script compares variants measured in the same run, with their repetitions
interleaved (A B C A B C ...) and summarised by the median, because absolute times on a
shared machine drift with the load of other users. Result files start with the command
and the machine that produced them.

Import this module before torch: ``setup_threads`` must set OMP_WAIT_POLICY before the
OpenMP runtime starts.
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

# On a loaded machine, OpenMP threads that spin while waiting for work steal the cores
# they wait for: a 2-thread toy step measured 15-25x slower than a 1-thread one while
# other jobs ran. PASSIVE makes idle threads sleep. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def setup_threads(threads: int) -> None:
    """Pin intra-op threads (0 keeps torch's default)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def add_common_args(parser, *, default_threads: int = 1) -> None:
    parser.add_argument("--threads", type=int, default=default_threads,
                        help="torch intra-op threads (0: torch's default); 1 gives the steadiest ratios on a shared machine")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the Markdown tables and plots")


# ---------------------------------------------------------------------- machine and command
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "soflow_mini", "benchmarks"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{rev}{' + uncommitted changes' if dirty else ''}" if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_line(device: str = "cpu") -> str:
    import torch

    parts = [f"{cpu_name()}, {os.cpu_count()} logical cores"]
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.insert(0, torch.cuda.get_device_name(0))
    parts.append(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s)")
    parts.append(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    try:
        parts.append("load average at start %.1f" % os.getloadavg()[0])
    except OSError:
        pass
    parts.append(f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    return "; ".join(parts)


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return " ".join(["python", str(script), *map(shlex.quote, sys.argv[1:])])


def header(title: str, device: str = "cpu") -> str:
    return (
        f"# {title}\n\n"
        f"- Command: `{command_line()}`\n"
        f"- Machine: {machine_line(device)}\n"
        f"- Code: git {git_revision()}; run {time.strftime('%Y-%m-%d %H:%M %Z')}\n"
    )


# ---------------------------------------------------------------------- tables and files
def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    rows = [[_cell(v) for v in row] for row in rows]
    align = align or "l" + "r" * (len(columns) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {_rel(path)}")
    return path


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def target_line(name: str, met: bool, detail: str) -> str:
    """One summary line per target: 'TARGET met|MISSED: name (detail)'."""
    return f"TARGET {'met' if met else 'MISSED'}: {name} ({detail})"


# ---------------------------------------------------------------------- timing
def interleaved_times(
    variants: dict[str, Callable[[], None]],
    *,
    repeats: int,
    inner: int = 1,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds per call of each variant: ``repeats`` rounds, each round runs every variant
    ``inner`` times in turn (A B C A B C ...), after ``warmup`` untimed calls each."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            sync()
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            sync()
            times[name].append((time.perf_counter() - start) / inner)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_ratio(times: dict[str, list[float]], num: str, den: str) -> tuple[float, float, float]:
    """Median of the per-round ratios num/den, with the 25th and 75th percentiles.

    Rounds are interleaved, so both variants of a round saw about the same machine load;
    the ratio within a round is steadier than the ratio of the two medians."""
    ratios = sorted(a / b for a, b in zip(times[num], times[den]))
    return statistics.median(ratios), _percentile(ratios, 0.25), _percentile(ratios, 0.75)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
