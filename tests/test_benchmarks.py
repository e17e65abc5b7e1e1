"""The SoFlow step keeps its stored results, and the benchmark helpers measure what they say."""

import json
import sys
from pathlib import Path

import pytest
import torch

from soflow_mini import MeanFlow, build_dit, energy_distance, sample_toy

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))

import common  # noqa: E402
import soflow_step  # noqa: E402


@pytest.mark.parametrize("case", soflow_step.CASES, ids=lambda c: "/".join(map(str, c)))
def test_soflow_step_matches_the_stored_golden_results(case):
    # losses, logs, gradient norms and samples of one step on fixed float64 inputs
    golden = json.loads(soflow_step.GOLDEN.read_text())["/".join(map(str, case))]
    now = soflow_step.step_results(*case)
    assert now.keys() == golden.keys()
    for key in golden:
        assert now[key] == pytest.approx(golden[key], rel=1e-9, abs=1e-12), key


def test_meanflow_jvp_runs_through_dit_attention():
    # fused attention kernels have no forward-mode AD rule; MeanFlow must still train a DiT
    model = MeanFlow(build_dit("DiT-T/4", 8, 4, 5))
    loss, _ = model.loss(torch.randn(3, 4, 8, 8), torch.randint(0, 5, (3,)))
    loss.backward()
    assert torch.isfinite(loss) and model.net.final_layer.linear.weight.grad is not None


def test_cached_energy_distance_equals_the_library_metric():
    from toy_quality import Energy

    ref, _ = sample_toy("moons", 600, seed=0)
    x, _ = sample_toy("moons", 500, seed=1)
    assert Energy(ref)(x) == pytest.approx(energy_distance(x, ref), abs=1e-12)


def test_paired_ratio_and_table():
    times = {"a": [2.0, 4.0, 6.0], "b": [1.0, 2.0, 2.0]}
    assert common.paired_ratio(times, "a", "b") == (2.0, 2.0, 2.5)
    table = common.markdown_table(["x", "y"], [["row", 0.5]])
    assert table.splitlines()[2] == "| row | 0.5 |"
