"""Execution time of the book: every chapter notebook, and the whole nbval run.

Each book/*.ipynb runs top to bottom in a fresh kernel, in its own folder, with nbclient
(as ``pytest --nbval`` and ``jupyter-book build`` run it); the notebook files are not
modified. The table gives each chapter's wall time, its three slowest cells, and the
targets: every chapter at most 60 s, and the whole ``pytest --nbval book/`` at most 8 min
(run it with --nbval; otherwise the total is the sum of the chapters).

The kernels inherit this process's environment, as under ``make nbval``; --passive sets
OMP_WAIT_POLICY=PASSIVE for them, to show what the OpenMP wait policy costs on a shared
machine (see optimizations.md, section 4).

    python benchmarks/book_time.py                      # every chapter, ~the book's own run time
    python benchmarks/book_time.py --nbval              # also time the real `pytest --nbval book/`
    python benchmarks/book_time.py book/07_dit.ipynb    # some chapters
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

_ENV_BEFORE = os.environ.get("OMP_WAIT_POLICY")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

if _ENV_BEFORE is None:  # common sets it for the benchmarks; the kernels get the user's environment
    os.environ.pop("OMP_WAIT_POLICY", None)

CHAPTER_LIMIT_S = 60.0
BOOK_LIMIT_S = 8 * 60.0
NBVAL_FLAGS = ["--nbval", "--nbval-sanitize-with", "book/_tools/nbval_sanitize.cfg", "--ignore=_build",
               "--ignore=book/_build", "-p", "no:cacheprovider", "-q"]


def cell_seconds(cell) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
        return (end - start).total_seconds()
    except (KeyError, ValueError):
        return float("nan")


def run_chapter(path: Path, timeout: int) -> dict:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    error = ""
    try:
        client.execute()
    except CellExecutionError as err:
        error = str(err).strip().splitlines()[-1][:120]
    except Exception as err:  # timeouts, dead kernels
        error = f"{type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''}"
    seconds = time.perf_counter() - start
    cells = [(cell_seconds(c), i) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    slow = sorted((c for c in cells if c[0] == c[0]), reverse=True)[:3]
    return {"seconds": seconds, "error": error, "slowest": slow, "code_cells": len(cells)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="per cell, seconds")
    parser.add_argument("--nbval", action="store_true", help="also time `pytest --nbval book/` as `make nbval` runs it")
    parser.add_argument("--passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE for the kernels")
    parser.add_argument("--name", default="book_time")
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    args = parser.parse_args(argv)
    if args.passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    notebooks = args.notebooks or sorted((common.ROOT / "book").glob("*.ipynb"))
    rows, total, lines = [], 0.0, []
    for path in notebooks:
        path = path.resolve()
        result = run_chapter(path, args.timeout)
        total += result["seconds"]
        slow = ", ".join(f"cell {i}: {s:.1f} s" for s, i in result["slowest"])
        status = "ok" if not result["error"] else f"error: {result['error']}"
        rows.append([path.name, result["seconds"], result["code_cells"], slow, status])
        print(f"{path.name}: {result['seconds']:.1f} s ({status})", flush=True)
        lines.append(common.target_line(f"chapter {path.stem} <= 60 s", result["seconds"] <= CHAPTER_LIMIT_S and not result["error"],
                                        f"{result['seconds']:.1f} s" + ("" if not result["error"] else ", failed")))
    nbval_s = None
    if args.nbval:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "book/", *NBVAL_FLAGS], cwd=common.ROOT,
                              capture_output=True, text=True)
        nbval_s = time.perf_counter() - start
        summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        lines.append(common.target_line("pytest --nbval book/ <= 8 min", nbval_s <= BOOK_LIMIT_S and proc.returncode == 0,
                                        f"{nbval_s / 60:.1f} min, exit {proc.returncode}: {summary[:100]}"))
    else:
        lines.append(common.target_line("book total (sum of chapters) <= 8 min", total <= BOOK_LIMIT_S,
                                        f"{total / 60:.1f} min; the nbval run itself: --nbval"))
    text = [common.header("Book execution time"),
            f"- Kernels: nbclient, fresh kernel per chapter; OMP_WAIT_POLICY for the kernels: "
            f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}; {len(notebooks)} notebooks\n\n",
            common.markdown_table(["chapter", "seconds", "code cells", "slowest cells", "status"], rows, align="lrrll"),
            f"\nSum of chapters: {total:.0f} s ({total / 60:.1f} min)."
            + (f" `pytest --nbval book/`: {nbval_s:.0f} s ({nbval_s / 60:.1f} min).\n" if nbval_s is not None else "\n"),
            "\n## Targets\n\n" + "".join(f"- {line}\n" for line in lines)]
    common.write_text(args.out / f"{args.name}.md", "".join(text))
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
