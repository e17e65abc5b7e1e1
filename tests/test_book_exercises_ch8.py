"""Chapter 8's exercise: the check cell accepts the solution and rejects wrong answers.

The cells are read from the notebook by their tags and run as the reader runs them, so the
test covers the check the book ships, not a copy of it.
"""

from __future__ import annotations


import pytest

from _book_cells import cell_source, rejected

NOTEBOOK = "08_comparison.ipynb"


def _cell(tag: str) -> str:
    return cell_source(NOTEBOOK, tag)


def _run_check(answer) -> dict:
    """Run the check cell with ``rows_per_step = answer``; returns the cell's namespace."""
    namespace = {"rows_per_step": answer}
    exec(compile(_cell("exercise-check"), "exercise-check", "exec"), namespace)
    return namespace


def _rejected(answer) -> str:
    return rejected(_run_check, answer)


def _solution():
    namespace: dict = {}
    exec(compile(_cell("exercise-solution"), "exercise-solution", "exec"), namespace)
    return namespace["rows_per_step"]


def test_solution_passes_and_the_stub_is_reported_as_not_done():
    namespace = _run_check(_solution())
    assert namespace["counted"]["SoFlow"] == (16, 16)  # the last case: velocity_loss_ratio 0
    stub: dict = {}
    with pytest.raises(NotImplementedError):
        exec(compile(_cell("exercise-stub"), "exercise-stub", "exec"), stub)
    assert _rejected(stub["rows_per_step"]).startswith("not done yet")


def _edited(**changes):
    solution = _solution()

    def answer(batch, ratio):
        rows = solution(batch, ratio)
        for name, rule in changes.items():
            rows[name] = rule(batch, ratio)
        return rows

    return answer


@pytest.mark.parametrize(
    "answer, names",
    [
        # MeanFlow's old one-call form counted for the default: no rows without gradient
        (_edited(MeanFlow=lambda b, r: (b, 0)), ["MeanFlow at batch 256"]),
        # with and without gradient swapped
        (_edited(SoFlow=lambda b, r: (b - int(r * b), b)), ["SoFlow at batch 256"]),
        # rounding instead of truncating the flow-matching rows: wrong only at batch 37
        (_edited(SoFlow=lambda b, r: (b, b - round(r * b))), ["SoFlow at batch 37"]),
        # consistency training's target counted on part of the batch only
        (_edited(**{"consistency (iCT-style)": lambda b, r: (b, b - int(r * b))}), ["consistency (iCT-style) at batch 256"]),
    ],
)
def test_wrong_counts_are_rejected_with_the_method_and_case(answer, names):
    message = _rejected(answer)
    for name in names:
        assert name in message


def test_the_printed_answer_pasted_as_constants_is_rejected():
    printed = _solution()(256, 0.75)
    message = _rejected(lambda batch, ratio: dict(printed))
    assert "at batch 100" in message and "at batch 256" not in message


def test_a_missing_method_is_named():
    def answer(batch, ratio):
        rows = _solution()(batch, ratio)
        del rows["MeanFlow, autograd JVP"]
        return rows

    assert "one entry per method" in _rejected(answer)
