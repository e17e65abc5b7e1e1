"""soflow_mini.exercises.check: each kind of failure becomes one ExerciseFailed message.

PYTEST_DONT_REWRITE: the asserts inside `check` blocks must raise plain AssertionErrors, as in a notebook.
"""

from __future__ import annotations

import pytest

from soflow_mini.exercises import ExerciseFailed, check


def test_passing_check_raises_nothing():
    answer = 2
    with check("two", needs=["answer"]):
        assert answer == 2


def test_stub_raising_not_implemented_is_reported_as_not_done():
    def velocity(x):
        raise NotImplementedError("write `velocity` in the exercise cell")

    with pytest.raises(ExerciseFailed) as info:
        with check("velocity", needs=["velocity"]):
            velocity(1.0)
    assert info.value.exercise == "velocity"
    assert info.value.reason == "not done yet: write `velocity` in the exercise cell"
    assert info.value.__suppress_context__  # no chained traceback of the stub


def test_placeholder_and_missing_names_are_caught_on_entry():
    ran = []
    r_half = ...
    with pytest.raises(ExerciseFailed, match=r"`r_half` is still `\.\.\.`"):
        with check("schedule", needs=["r_half"]):
            ran.append(r_half)
    assert not ran, "the block must not run while an answer is a placeholder"
    with pytest.raises(ExerciseFailed, match="`l_pair` is not defined"):
        with check("schedule", needs=["l_pair"]):
            ran.append(1)
    assert not ran


def test_wrong_answer_keeps_the_assert_message_or_names_the_line():
    with pytest.raises(ExerciseFailed) as info:
        with check("ratio"):
            assert 0.1 == 0.05, "ratio 0.1 differs from the factor of Theorem 3"
    assert info.value.reason == "wrong answer: ratio 0.1 differs from the factor of Theorem 3"
    with pytest.raises(ExerciseFailed) as info:
        with check("ratio"):
            assert 1 + 1 == 3
    assert info.value.reason == "wrong answer: a condition of the check does not hold (at `assert 1 + 1 == 3`)"


def test_other_errors_name_their_type_and_line():
    with pytest.raises(ExerciseFailed) as info:
        with check("shapes"):
            _ = [1, 2][5]
    assert info.value.reason == "your code raised IndexError: list index out of range (at `_ = [1, 2][5]`)"


def test_rendered_without_traceback_and_interrupts_pass_through():
    lines = ExerciseFailed("velocity", "not done yet: write it")._render_traceback_()
    assert len(lines) == 1 and "velocity" in lines[0] and "not done yet: write it" in lines[0]
    assert "Traceback" not in lines[0]
    with pytest.raises(KeyboardInterrupt):
        with check("anything"):
            raise KeyboardInterrupt


@pytest.mark.parametrize("kwargs", [dict(exercise=""), dict(exercise="x", needs="ratio"),
                                    dict(exercise="x", needs=["not a name"])])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="exercise|needs"):
        check(**kwargs)
