"""Execute chapter notebooks in place, storing outputs and widget state (``make notebooks``).

Each notebook runs top to bottom in a fresh kernel, in its own folder, as
``pytest --nbval`` and ``jupyter-book build`` run it; the stored outputs are what nbval
then compares. Per-cell timing metadata is not recorded, so re-running an unchanged
deterministic chapter leaves the file unchanged apart from timing-tagged cells.

Usage: python book/_tools/execute.py [NOTEBOOK ...] [--timeout SECONDS]
       (no NOTEBOOK: every chapter in _toc.yml)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_colab_cells import ROOT, chapter_notebooks  # noqa: E402


def execute(path: Path, timeout: int = 120) -> float:
    """Run one notebook in place; returns its wall-clock execution time in seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
        record_timing=False,
        allow_errors=False,
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=120, help="per-cell limit in seconds")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or chapter_notebooks()
    total = 0.0
    for path in paths:
        seconds = execute(path, args.timeout)
        total += seconds
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{seconds:6.1f} s  {name}", flush=True)
    print(f"{total:6.1f} s  total ({len(paths)} notebooks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
