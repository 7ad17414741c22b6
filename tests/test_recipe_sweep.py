"""benchmarks/recipe_sweep.py: the first layer's switch-on levels, and the committed table;
benchmarks/threshold_probe.py: the held first-layer filter."""

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


@pytest.fixture(scope="module")
def probe(sweep):  # imported while ``sweep`` holds benchmarks/ on the path
    import threshold_probe
    return threshold_probe


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


def test_held_threshold_survives_optimizer_steps(probe, sweep):
    torch.manual_seed(0)
    model = rvi.new_model("lenet", rvi.TrainConfig())
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    hold = probe.hold_threshold(conv, 2, level=0.69, weight=1.2)
    images = torch.rand(8, 1, 28, 28)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)

    def steps(n):
        for _ in range(n):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), torch.arange(8)).backward()
            optimizer.step()

    before = conv.weight.detach().clone()
    steps(3)
    outputs = conv(images)  # (8, 6, 28, 28); padding 2 keeps each pixel at a filter's centre
    torch.testing.assert_close(outputs[:, 2:3], 1.2 * images - 0.69 * 1.2)
    assert not torch.allclose(conv.weight[0], before[0]), "the other filters must still train"
    assert 0.69 in sweep.switch_on_levels(model)
    hold.remove()  # released: the filter trains like the others
    steps(1)
    assert (conv(images)[:, 2:3] - (1.2 * images - 0.69 * 1.2)).abs().max() > 0.01
