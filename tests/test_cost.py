"""Randomization by blocks, and the time estimate a run prints (and refuses by) before it starts.

The estimate's accuracy against measured wall time is a benchmark (benchmarks/cost_estimate.py),
not a test: here only what can be known exactly is asserted (step groups, counted passes, the
refusal before any work, suggestions that shrink)."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

import rvi
from rvi.config import AttackConfig, BenchmarkConfig, TrainConfig
from rvi.scoring.controls import (LAYER_STEPS_UP_TO, MAX_BLOCK_STEPS, randomization_curve,
                                  randomization_steps, randomized_maps)
from rvi.scoring.cost import (AUTOATTACK_PASSES, CostModel, Estimate, _Counter, _StandIn, attack_passes,
                              model_speed, suggestions)
from rvi.cli import main
from rvi.scoring.pipeline import CellSpec
from rvi.scoring.records import NATURAL_ROBUST

X = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def block(channels):
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())


class Staged(nn.Module):
    """A stem, three stages of two blocks (4 convolutions each) in one container, a head: 15
    parameter modules, more than LAYER_STEPS_UP_TO, so auto steps by blocks."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stages = nn.Sequential(*[nn.Sequential(block(4), block(4)) for _ in range(3)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        return self.head(self.pool(self.stages(self.stem(x))).flatten(1))


def test_blocks_of_a_staged_model_are_its_stem_stages_and_head():
    model = Staged()
    assert sum(1 for _ in randomization_steps(model, X, "layers")) == 14 > LAYER_STEPS_UP_TO
    steps = randomization_steps(model, X, "auto")
    assert [name for name, _ in steps] == ["stem", "stages.0", "stages.1", "stages.2", "head"]
    assert [len(modules) for _, modules in steps] == [1, 4, 4, 4, 1]
    # a wrapper without parameters of its own (normalization) is looked through
    wrapped = nn.Sequential(rvi.models.architectures.Normalize((0.5,) * 3, (0.5,) * 3), Staged())
    assert [name for name, _ in randomization_steps(wrapped, X, "blocks")] == [
        "1.stem", "1.stages.0", "1.stages.1", "1.stages.2", "1.head"]


def test_small_models_keep_their_per_layer_steps():
    lenet = rvi.build_model("lenet")
    example = torch.rand(1, 1, 28, 28)
    steps = randomization_steps(lenet, example, "auto")
    assert steps == [(name, [name]) for name in ("0", "3", "7", "9", "11")]
    assert steps == randomization_steps(lenet, example, "layers")


def test_many_flat_blocks_are_merged_into_consecutive_groups():
    flat = nn.Sequential(*[nn.Conv2d(3, 3, 1) for _ in range(30)])
    steps = randomization_steps(flat, X, "blocks")
    assert len(steps) == MAX_BLOCK_STEPS
    merged = [m for _, modules in steps for m in modules]
    assert merged == [str(i) for i in range(30)]  # every layer once, in forward order
    assert all(len(modules) in (2, 3) for _, modules in steps)  # 30 layers over 12 steps
    assert all(name == f"{modules[0]}..{modules[-1]}" for name, modules in steps)


def test_bad_steps_are_named():
    with pytest.raises(ValueError, match="steps must be one of auto, layers, blocks; got 'stage'"):
        randomization_steps(Staged(), X, "stage")
    with pytest.raises(ValueError, match="randomization_steps must be one of"):
        BenchmarkConfig(randomization_steps="stage")


def test_cascading_by_blocks_reinitializes_one_more_block_per_step():
    torch.manual_seed(0)
    model = Staged().eval()
    trained = copy.deepcopy(model.state_dict())
    steps = randomization_steps(model, X, "blocks")
    seen = []
    for step, layer, work, _ in randomized_maps(model, X, torch.tensor([1, 2]), mode="cascading",
                                                method="saliency", steps="blocks"):
        changed = {name.rsplit(".", 1)[0] for name, value in work.state_dict().items()
                   if not torch.equal(value, trained[name])}
        expected = {m for _, modules in steps[len(steps) - step:] for m in modules}
        assert changed == expected, (step, layer)
        seen.append(layer)
    assert seen == ["none", "head", "stages.2", "stages.1", "stages.0", "stem"]
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())  # untouched


def test_randomization_curve_rows_name_the_blocks():
    torch.manual_seed(0)
    rows = randomization_curve(Staged().eval(), X, torch.tensor([1, 2]), method="saliency",
                               metrics=("cosine",), mode="independent", steps="blocks")
    assert {r["layer"] for r in rows} == {"none", "head", "stages.2", "stages.1", "stages.0",
                                          "stem"}


def test_attack_passes():
    base = AttackConfig(eps=0.3, alpha=0.1, steps=7)
    assert attack_passes(base) == 7
    assert attack_passes(AttackConfig(eps=0.3, alpha=0.1, steps=40, restarts=5,
                                      random_start=True)) == 200
    assert attack_passes(AttackConfig(name="fgsm", eps=0.3)) == 1
    assert attack_passes(AttackConfig(name="autoattack", eps=0.3)) == AUTOATTACK_PASSES


def test_stand_in_counts_the_images_of_its_passes_also_through_copies():
    counter = _Counter()
    model = _StandIn((1, 4, 4), 3, counter)
    x = torch.rand(5, 1, 4, 4, requires_grad=True)
    model(x).sum().backward()
    with torch.no_grad():
        copy.deepcopy(model)(x[:2])
    assert counter.now() == (7, 5)


def test_model_speed_is_per_image_and_leaves_the_model_as_it_was(lenet, batch):
    speed = model_speed(lenet, batch[0], batch_size=16)
    assert 0 < speed.forward < 1.0 and 0 < speed.gradient < 1.0
    assert lenet.training is False and all(p.grad is None for p in lenet.parameters())


def _spec(**changes):
    fields = dict(attack=AttackConfig(eps=0.3, alpha=0.1, steps=2), evaluations=(),
                  methods=("saliency",), metrics=("cosine",), controls=())
    fields.update(changes)
    return CellSpec(**fields)


def test_counted_passes_of_a_known_cell(lenet, batch):
    """Saliency with one model-free metric: per cell and image, the explanation's one backward;
    two models x two inputs."""
    models = {"natural": lenet, "robust": copy.deepcopy(lenet)}
    cost = CostModel(_spec(), NATURAL_ROBUST, models, batch[0], 10)
    backward_line = cost.probe.passes["cells"][1]
    assert backward_line[1] == pytest.approx(4.0)  # images' backward passes per probe image
    assert cost.probe.passes["faithfulness"] == ((0.0, 0.0), (0.0, 0.0))


def test_prediction_scales_with_the_counts(lenet, batch):
    spec = _spec(metrics=("cosine", "deletion"), controls=("cascading",), cascade_n=16,
                 randomization_draws=1)
    models = {"natural": lenet, "robust": copy.deepcopy(lenet)}
    cost = CostModel(spec, NATURAL_ROBUST, models, batch[0], 10)
    small, large = cost.predict(spec, 100, 1), cost.predict(spec, 1000, 1)
    assert 0 < small.seconds["explain"] < large.seconds["explain"]
    assert cost.predict(spec, 100, 3).total == pytest.approx(3 * small.total)
    more_draws = dataclasses.replace(spec, randomization_draws=5)
    assert cost.predict(more_draws, 100, 1).seconds["randomization"] == pytest.approx(
        5 * small.seconds["randomization"])
    assert small.seconds["train"] == 0 and cost.predict(spec, 100, 1, 60.0).seconds["train"] == 60


def test_suggestions_only_list_settings_that_shrink_the_run(lenet, synthetic):
    config = BenchmarkConfig(dataset="synthetic", metrics=("cosine", "deletion_gain"),
                             methods=("saliency",), eval_attacks=())
    spec = CellSpec.from_benchmark(config, 256)
    models = {"natural": lenet, "robust": copy.deepcopy(lenet)}
    cost = CostModel(spec, NATURAL_ROBUST, models, synthetic.test_images, 10)
    tips = suggestions(cost, config, 256, 0.0, bound=0.0)
    assert tips and not any("randomization-steps" in tip for tip in tips)  # LeNet's blocks = layers
    totals = [cost.predict(spec, 256, 1).total]
    for tip in tips:
        flags = dict(pair.split(" ") for pair in tip.split(":")[0].replace(" --", "|--").split("|"))
        changed = dataclasses.replace(config, **{k[2:].replace("-", "_"): (
            int(v) if v.isdigit() else v) for k, v in flags.items()})
        count = min(256, changed.n_test or 256)
        totals.append(cost.predict(CellSpec.from_benchmark(changed, count), count, 1).total)
    assert all(a > b for a, b in zip(totals, totals[1:]))


def test_max_minutes_refuses_before_any_training(tmp_path):
    attack = AttackConfig(eps=0.3, alpha=0.1, steps=2)
    config = BenchmarkConfig(
        dataset="synthetic", natural=TrainConfig(epochs=2), n_test=32, cascade_n=8,
        robust=TrainConfig(adversarial=True, epochs=2, attack=attack), attack=attack,
        cache_dir=str(tmp_path / "cache"), max_minutes=1e-6)
    with pytest.raises(ValueError, match=r"max_minutes is 1e-06, but this run is estimated at "
                                         r".*, most of it \w+ \(.*\); \w+ shrinks with --"):
        rvi.run_benchmark(config)
    assert not list((tmp_path / "cache").glob("*.pt"))


def test_cli_prints_the_estimate_and_refuses_in_one_line(tmp_path, capsys):
    args = ["bench", "--dataset", "synthetic", "--n-test", "16", "--cascade-n", "4",
            "--natural-epochs", "1", "--robust-epochs", "1", "--max-minutes", "1e-6",
            "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "estimated time on this machine" in err and "  total " in err
    assert err.strip().splitlines()[-1].startswith("rvi bench: error: max_minutes is 1e-06")
    assert not (tmp_path / "out").exists()


def test_a_run_with_progress_stores_its_estimate(tmp_path):
    attack = AttackConfig(eps=0.3, alpha=0.1, steps=2)
    config = BenchmarkConfig(
        dataset="synthetic", natural=TrainConfig(epochs=1), n_test=16, cascade_n=4,
        robust=TrainConfig(adversarial=True, epochs=1, attack=attack), attack=attack,
        metrics=("cosine",), methods=("saliency",), eval_attacks=(), bootstrap=100,
        randomization_draws=1, grid_images=1, cache_dir=str(tmp_path / "cache"))
    result = rvi.run_benchmark(config, progress=True)
    estimate = result.meta["estimate_seconds"]
    assert set(estimate) == {"train", "attack", "evaluate", "explain", "randomization",
                             "mechanism"}
    assert estimate["train"] > 0 and estimate["explain"] > 0
    assert isinstance(Estimate(estimate, ()).total, float)


def test_compare_with_progress_stores_its_estimate_without_training(batch):
    torch.manual_seed(0)
    models = {name: rvi.build_model("lenet").eval() for name in ("a", "b")}
    config = BenchmarkConfig(dataset="synthetic", metrics=("cosine",), methods=("saliency",),
                             eval_attacks=(), controls=("independent",), cascade_n=4,
                             randomization_draws=1, bootstrap=100, grid_images=1)
    result = rvi.compare(models, *batch, config, progress=True)
    estimate = result.meta["estimate_seconds"]
    assert estimate["train"] == 0 and estimate["randomization"] > 0 and estimate["mechanism"] == 0
