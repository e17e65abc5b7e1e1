"""Reading a chapter's cells by tag and running them, for the exercise tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"


def cell_source(notebook: str, tag: str) -> str:
    """The source of the one cell of book/``notebook`` tagged ``tag``."""
    cells = [c for c in json.loads((BOOK / notebook).read_text())["cells"] if tag in c["metadata"].get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag}, found {len(cells)}"
    return "".join(cells[0]["source"])


def run_cell(notebook: str, tag: str, namespace: dict) -> dict:
    """Execute the cell tagged ``tag`` in ``namespace``; returns the namespace."""
    exec(compile(cell_source(notebook, tag), tag, "exec"), namespace)
    return namespace


def rejected(run_check: Callable[[object], object], answer) -> str:
    """The one-line message with which ``run_check(answer)`` rejects a wrong answer."""
    with pytest.raises(Exception) as info:
        run_check(answer)
    assert type(info.value).__name__ == "ExerciseWrong", repr(info.value)
    lines = info.value._render_traceback_()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    return str(info.value)
