"""Checks for the book's exercises: a failed check says what is wrong in one message.

A check cell of the student edition reads

    from soflow_mini.exercises import check

    with check("the velocity of one Gaussian", needs=["gaussian_velocity"]):
        ...  # the chapter's asserts

Inside the block, a stub that still raises NotImplementedError, a failed assert or any other
error of the student's code becomes an `ExerciseFailed`, which Jupyter (IPython) shows as
one line instead of a traceback. Names listed in `needs` must be defined and must not be the
placeholder `...` when the block starts.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["ExerciseFailed", "check"]

_LIBRARY_DIRS = (str(Path(__file__).resolve().parent), sys.prefix, sys.base_prefix)


class ExerciseFailed(Exception):
    """A check of an exercise failed; `exercise` names it and `reason` says what is wrong.

    IPython renders it through `_render_traceback_`: one line, no stack frames.
    """

    def __init__(self, exercise: str, reason: str):
        super().__init__(f"{exercise}: {reason}")
        self.exercise, self.reason = exercise, reason

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows in place of a traceback."""
        return [f"\x1b[31mExercise not passed ({self.exercise}): {self.reason}\x1b[0m"]


def _where(tb: TracebackType | None) -> str:
    """The last line of the failing code outside the library and the Python installation."""
    frames = [f for f in traceback.extract_tb(tb) if f.line and not f.filename.startswith(_LIBRARY_DIRS)]
    return f" (at `{frames[-1].line.strip()}`)" if frames else ""


class check:  # noqa: N801 - used as a statement, `with check(...)`, like contextlib's helpers
    """Context manager around an exercise's check: turns a failure into `ExerciseFailed`.

    `exercise` names the exercise in the message; `needs` lists the names the student defines
    (functions or values), checked on entry: missing, or still the placeholder `...`.
    Interrupts (KeyboardInterrupt, SystemExit) pass through unchanged.
    """

    def __init__(self, exercise: str, *, needs: Sequence[str] = ()):
        if not isinstance(exercise, str) or not exercise:
            raise ValueError(f"exercise must be a non-empty string naming the exercise, got {exercise!r}")
        if isinstance(needs, str) or not all(isinstance(n, str) and n.isidentifier() for n in needs):
            raise ValueError(f"needs must be a list of Python names, got {needs!r}")
        self.exercise, self.needs = exercise, list(needs)

    def __enter__(self) -> check:
        caller = sys._getframe(1)
        namespace = {**caller.f_globals, **caller.f_locals}
        for name in self.needs:
            if name not in namespace:
                raise ExerciseFailed(
                    self.exercise, f"`{name}` is not defined: write it in the exercise cell and run that cell first"
                )
            if namespace[name] is Ellipsis:
                raise ExerciseFailed(self.exercise, f"`{name}` is still `...`: replace it with your answer")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if error is None or not isinstance(error, Exception):
            return False
        if isinstance(error, ExerciseFailed):
            raise error
        if isinstance(error, NotImplementedError):
            detail = str(error) or "a stub still raises NotImplementedError"
            raise ExerciseFailed(self.exercise, f"not done yet: {detail}") from None
        if isinstance(error, AssertionError):
            detail = str(error) or f"a condition of the check does not hold{_where(tb)}"
            raise ExerciseFailed(self.exercise, f"wrong answer: {detail}") from None
        raise ExerciseFailed(
            self.exercise, f"your code raised {type(error).__name__}: {error}{_where(tb)}"
        ) from None
