"""Every result the book's prose relies on is compared by nbval or asserted.

A code cell tagged ``nbval-ignore-output`` is not compared (its output varies between CPU
models). That is allowed for timings; any other such cell must be followed, within the next
two code cells, by a compared cell that asserts the claims the prose draws from it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
TIMING = re.compile(r"perf_counter|time\.time\(|timeit|best_time|seconds", re.I)
IGNORED = "nbval-ignore-output"
# Result cells still exempt without a check, by notebook (code cell indices).
# The test fails when a listed cell is checked (remove it here) and when any other cell joins.
PENDING = {
    "01_introduction.ipynb": [8],
    "04_training_objectives.ipynb": [11, 12, 13, 15, 16],
    "06_guidance.ipynb": [8],
}
ASSERTS = re.compile(r"^[^#\n]*\bassert", re.M)  # assert statements, torch.testing.assert_close, ...


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def unchecked_cells(cells: list[dict]) -> list[int]:
    """Indices (among code cells) of ignored non-timing cells with no asserting cell after them."""
    code = [c for c in cells if c["cell_type"] == "code"]
    found = []
    for i, cell in enumerate(code):
        if IGNORED not in _tags(cell) or TIMING.search("".join(cell["source"])):
            continue
        after = next((c for c in code[i + 1:i + 3] if IGNORED not in _tags(c)), None)
        if after is None or not ASSERTS.search("".join(after["source"])):
            found.append(i)
    return found


def _code(source: str, *tags: str) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {"tags": list(tags)}}


def test_the_rule_finds_unchecked_results_and_accepts_checked_ones():
    result, timing = _code("energy = train()", IGNORED), _code("seconds = perf_counter() - t0", IGNORED)
    check, plot = _code("assert energy < 0.01"), _code("plt.plot(energy)")
    assert unchecked_cells([result, plot]) == [0]
    assert unchecked_cells([result]) == [0]  # nothing after it
    assert unchecked_cells([result, check]) == []
    assert unchecked_cells([result, timing, check]) == []  # a timing cell in between
    assert unchecked_cells([result, plot, check]) == [0]  # the check must come right after
    assert unchecked_cells([timing, plot]) == []
    assert unchecked_cells([result, _code("# assert later")]) == [0]  # a comment asserts nothing
    assert unchecked_cells([result, _code("torch.testing.assert_close(energy, 0.0)")]) == []


@pytest.mark.parametrize("path", sorted(BOOK.glob("*.ipynb")), ids=lambda p: p.name)
def test_every_ignored_result_is_followed_by_a_check(path):
    cells = json.loads(path.read_text())["cells"]
    missing = unchecked_cells(cells)
    pending = PENDING.get(path.name, [])
    assert not set(pending) - set(missing), f"{path.name}: cells {pending} are now checked: drop them from PENDING"
    missing = [i for i in missing if i not in pending]
    assert not missing, (
        f"{path.name}: code cells {missing} are exempt from nbval, are not timings, and no compared "
        "cell asserting their claims follows them"
    )
