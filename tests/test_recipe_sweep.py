"""benchmarks/recipe_sweep.py: the first layer's switch-on levels, and the committed table."""

import sys
from pathlib import Path

import pytest
import torch

import rvi

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def sweep():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import recipe_sweep
        yield recipe_sweep
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_switch_on_levels_known_answer(sweep):
    model = rvi.new_model("lenet", rvi.TrainConfig())
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    weight = torch.zeros_like(conv.weight)  # (6, 1, 5, 5)
    bias = torch.zeros(6)
    weight[0, 0, 2, 2], bias[0] = 2.0, -0.6          # on from 0.3
    weight[1, 0, 0, 4], bias[1] = 1.5, -1.05         # on from 0.7
    weight[2] = 0.1                                  # spread over 25 pixels: not one pixel
    weight[3] = 1e-3                                 # dead: too little weight
    weight[4] = 0.005                                # peak 1.0 of 1.12: just under 90%
    weight[4, 0, 1, 1], bias[4] = 1.0, -0.2
    weight[5, 0, 3, 3], bias[5] = -1.0, 0.5          # negative weight: off above 0.5
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    assert sweep.switch_on_levels(model) == [0.3, 0.5, 0.7]


def test_committed_table_is_what_render_writes(sweep):
    rows = sweep.all_rows()
    committed = (BENCHMARKS / "results" / "recipe_sweep.md").read_text()
    assert sweep.render(rows) == committed
    measured = [row for row in rows if "levels" in row]
    assert measured, "no levels recorded"
    assert all(row["name"].startswith("rob") for row in measured)
