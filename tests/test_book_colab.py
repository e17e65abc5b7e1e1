"""The Colab install cell of every chapter matches the repository named in _config.yml."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_tools"))

import sync_colab_cells as sync  # noqa: E402


def test_install_cell_derives_from_config(tmp_path):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["repository"].update(url="https://github.com/someone/fork", branch="dev")
    path = tmp_path / "_config.yml"
    path.write_text(yaml.safe_dump(config))
    source = sync.install_cell_source(path)
    assert '"google.colab" in sys.modules' in source
    assert "soflow-mini[digits] @ git+https://github.com/someone/fork@dev" in source


def test_sync_inserts_then_is_idempotent(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 1. Title"), nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    source = sync.install_cell_source()
    assert sync.sync_notebook(path, source) is True
    cells = nbformat.read(path, as_version=4).cells
    assert [c.cell_type for c in cells] == ["markdown", "code", "code"]
    assert cells[1].source == source and sorted(cells[1].metadata.tags) == ["nbval-skip", "remove-cell"]
    assert sync.sync_notebook(path, source) is False
    # A stale URL is replaced in place, not duplicated.
    assert sync.sync_notebook(path, source.replace("@main", "@old")) is True
    cells = nbformat.read(path, as_version=4).cells
    assert sum(sync.MARKER in c.source for c in cells) == 1


def test_every_chapter_install_cell_in_sync():
    chapters = sync.chapter_notebooks()
    assert len(chapters) >= 10, "the table of contents should list every chapter notebook"
    stale = [str(p.relative_to(ROOT)) for p in sync.out_of_sync()]
    assert not stale, (
        f"Colab install cell missing or out of sync with _config.yml in {stale}; "
        "run `.venv/bin/python book/_tools/sync_colab_cells.py`"
    )
