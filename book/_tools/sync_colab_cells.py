"""Regenerate the Colab install cell of every chapter from _config.yml.

The public repository URL and branch live in one place, the `repository` block of
_config.yml. The Colab launch buttons read it, and so does each chapter notebook's first
code cell, which installs the library beside the book when the notebook runs on Colab:

    import sys
    if "google.colab" in sys.modules:  # Colab only: install the library beside the book
        import subprocess
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "soflow-mini[digits] @ git+URL@BRANCH"], check=True)

The cell is tagged remove-cell (hidden in the HTML) and nbval-skip (never run by the tests).

Usage: python book/_tools/sync_colab_cells.py [--check]
  --check  change nothing; exit 1 and list the notebooks whose cell is out of sync.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[2]
TAGS = ["remove-cell", "nbval-skip"]
CELL_ID = "colab-install"
MARKER = 'if "google.colab" in sys.modules:'


def install_cell_source(config_path: Path = ROOT / "_config.yml") -> str:
    """The install cell's source for the repository named in _config.yml."""
    repo = yaml.safe_load(config_path.read_text())["repository"]
    url, branch = str(repo["url"]).rstrip("/"), str(repo["branch"])
    spec = f"soflow-mini[digits] @ git+{url}@{branch}"
    return (
        "import sys\n"
        f"{MARKER}  # Colab only: install the library beside the book\n"
        "    import subprocess\n"
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{spec}"], check=True)'
    )


def chapter_notebooks(toc_path: Path = ROOT / "_toc.yml") -> list[Path]:
    """Every notebook the table of contents lists (root, parts, chapters, sections)."""
    found: list[Path] = []

    def visit(node) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    path = ROOT / f"{node[key]}.ipynb"
                    if path.exists():
                        found.append(path)
            for value in node.values():
                if isinstance(value, (list, dict)):
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(yaml.safe_load(toc_path.read_text()))
    return found


def _is_install_cell(cell) -> bool:
    return cell.cell_type == "code" and MARKER in cell.source


def cell_in_sync(nb, source: str) -> bool:
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or not _is_install_cell(code[0]):
        return False
    cell = code[0]
    return (
        cell.source == source
        and sorted(cell.metadata.get("tags", [])) == sorted(TAGS)
        and not cell.get("outputs")
    )


def sync_notebook(path: Path, source: str) -> bool:
    """Rewrite the notebook's install cell; returns True if the file changed."""
    nb = nbformat.read(path, as_version=4)
    if cell_in_sync(nb, source):
        return False
    nb.cells = [c for c in nb.cells if not _is_install_cell(c)]
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(TAGS)})
    cell.id = CELL_ID
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), None)
    if first_code is None:  # no code yet: after the title cell
        first_code = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
    nb.cells.insert(first_code, cell)
    nbformat.write(nb, path)
    return True


def out_of_sync(source: str | None = None) -> list[Path]:
    source = source if source is not None else install_cell_source()
    return [p for p in chapter_notebooks() if not cell_in_sync(nbformat.read(p, as_version=4), source)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report, change nothing")
    args = parser.parse_args(argv)
    source = install_cell_source()
    if args.check:
        stale = out_of_sync(source)
        for path in stale:
            print(f"out of sync: {path.relative_to(ROOT)}")
        return 1 if stale else 0
    for path in chapter_notebooks():
        if sync_notebook(path, source):
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
