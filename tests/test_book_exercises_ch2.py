"""Chapter 2's exercise: the check cell accepts the solution and rejects wrong answers.

The cells are read from the notebook by their tags and run as the reader runs them, so the
test covers the check the book ships, not a copy of it.
"""

from __future__ import annotations


import pytest
import torch

from soflow_mini import get_path

from _book_cells import cell_source, rejected

NOTEBOOK = "02_flow_matching.ipynb"


def _cell(tag: str) -> str:
    return cell_source(NOTEBOOK, tag)


def _defined(tag: str, *, raises: type[BaseException] | None = None):
    """gaussian_velocity as the cell tagged ``tag`` defines it (the cell's own imports given)."""
    namespace: dict = {"torch": torch, "get_path": get_path}
    if raises is None:
        exec(compile(_cell(tag), tag, "exec"), namespace)
    else:
        with pytest.raises(raises):
            exec(compile(_cell(tag), tag, "exec"), namespace)
    return namespace["gaussian_velocity"]


def _run_check(answer) -> dict:
    """Run the check cell with ``gaussian_velocity = answer``; returns the cell's namespace."""
    namespace = {"gaussian_velocity": answer}
    exec(compile(_cell("exercise-check"), "exercise-check", "exec"), namespace)
    return namespace


def _rejected(answer) -> str:
    return rejected(_run_check, answer)


def _coefficients(x, t, mu, path):
    a, b = path.alpha(t)[:, None], path.beta(t)[:, None]
    da, db = path.d_alpha(t)[:, None], path.d_beta(t)[:, None]
    return a, b, da, db, torch.as_tensor(mu, dtype=x.dtype)


def test_solution_passes_and_the_stub_is_reported_as_not_done():
    assert _run_check(_defined("exercise-solution"))["cases"] == 8
    stub = _defined("exercise-stub", raises=NotImplementedError)
    assert _rejected(stub).startswith("not done yet")


def _sign_error(x, t, mu, sigma, path):  # b b' subtracted instead of added
    a, b, da, db, mu = _coefficients(x, t, mu, path)
    return da * mu + (a * da * sigma**2 - b * db) / (a**2 * sigma**2 + b**2) * (x - a * mu)


def _sigma_as_variance(x, t, mu, sigma, path):  # sigma where sigma^2 belongs
    a, b, da, db, mu = _coefficients(x, t, mu, path)
    return da * mu + (a * da * sigma + b * db) / (a**2 * sigma + b**2) * (x - a * mu)


def _conditional_velocity(x, t, mu, sigma, path):  # the conditional velocity of x0 = mu: the spread ignored
    a, b, da, db, mu = _coefficients(x, t, mu, path)
    return da * mu + db * (x - a * mu) / b


@pytest.mark.parametrize("answer", [_sign_error, _sigma_as_variance, _conditional_velocity])
def test_wrong_velocities_are_rejected_with_the_case(answer):
    message = _rejected(answer)
    assert message.startswith("off by") and "path, D =" in message


def test_the_printed_answer_pasted_as_a_constant_is_rejected():
    # The stub's and solution's last line prints the velocity at one point; paste it back.
    printed = _defined("exercise-solution")(
        torch.tensor([[0.5, 0.0]], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64),
        [0.7, -0.3], 0.5, get_path("linear"))
    assert "expected a tensor of shape" in _rejected(lambda x, t, mu, sigma, path: printed.clone())
    # Broadcast to the right shape, the constant is still wrong.
    assert _rejected(lambda x, t, mu, sigma, path: printed.expand_as(x).clone()).startswith("off by")


def test_an_error_inside_the_answer_is_reported_in_one_line():
    def broken(x, t, mu, sigma, path):
        return path.alpha(t) * x  # (B,) times (B, D) does not broadcast

    assert "raised RuntimeError" in _rejected(broken)
