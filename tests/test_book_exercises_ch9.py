"""Chapter 9's exercise: the check cell accepts the solution and rejects wrong answers.

The cells are read from the notebook by their tags and run with the names they read from the
chapter (the paths, the mixture), so the test covers the check the book ships.
"""

from __future__ import annotations

import math

import pytest
import torch

from soflow_mini import GaussianMixture, get_path
from soflow_mini.baselines import VPPath
from soflow_mini.baselines.diffusion import log_snr

from _book_cells import cell_source, rejected

NOTEBOOK = "09_diffusion.ipynb"
MIX = dict(means=[[1.0, -0.5], [-1.5, 1.0]], stds=[0.3, 0.6], weights=[0.4, 0.6])


def _cell(tag: str) -> str:
    return cell_source(NOTEBOOK, tag)


def _chapter_names() -> dict:
    vp = VPPath()
    return dict(torch=torch, math=math, DT=torch.float64, vp=vp, trig=get_path("trig"), MIX=MIX,
                GaussianMixture=GaussianMixture, log_snr=log_snr, mix_vp=GaussianMixture(**MIX, path=vp))


def _run_check(answer) -> dict:
    namespace = {**_chapter_names(), "trig_time": answer}
    exec(compile(_cell("exercise-check"), "exercise-check", "exec"), namespace)
    return namespace


def _rejected(answer) -> str:
    return rejected(_run_check, answer)


def _solution():
    namespace = _chapter_names()
    exec(compile(_cell("exercise-solution"), "exercise-solution", "exec"), namespace)
    return namespace["trig_time"]


def test_solution_passes_and_the_stub_is_reported_as_not_done():
    assert _run_check(_solution())["same_score"]
    stub = _chapter_names()
    with pytest.raises(NotImplementedError):
        exec(compile(_cell("exercise-stub"), "exercise-stub", "exec"), stub)
    assert _rejected(stub["trig_time"]).startswith("not done yet")


def test_wrong_answers_are_rejected():
    vp = VPPath()
    # the printed answer pasted as constants
    printed = _solution()(torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    assert "one time per input" in _rejected(lambda t: printed)
    # a sign error: alpha and beta swapped, tan(pi tau / 2) = alpha / beta
    assert "log-SNR" in _rejected(lambda t: 2 / math.pi * torch.atan2(vp.alpha(t), vp.beta(t)))
    # the linear path's time change (eq-ch9-time-change) instead of the trig one
    assert "log-SNR" in _rejected(lambda t: vp.beta(t) / (vp.alpha(t) + vp.beta(t)))
    # the identity: same time on both paths
    assert "log-SNR" in _rejected(lambda t: t)
