"""Every verdict rule can be passed by a real effect and failed by its absence: known-answer pairs
of constructed models, run through rvi.compare end to end (attacks, maps, controls, layer
randomization, statistics, verdicts), for each metric family that has verdicts.

The models are linear template matchers on rvi's synthetic stroke images (class k: a bright bar
at a position and orientation of its own). A linear model's gradient, and so its Guided Backprop
map, is its weight row, so what a map shows is set by construction:

- the *template* model's row for class c is the mask of class c's bar: its maps are the digit's
  bar and nothing else, it is hard to attack (an L-inf step moves its logit by eps times the
  bar's pixel count), and the pixels its map ranks first are the ones it uses;
- the *noisy* model adds Gaussian noise to every weight: its maps are mostly noise, an L-inf
  attack moves every noisy weight's logit, and its map ranks background pixels (where the
  image is dark and nothing is used) among the first.
"""

import pytest
import torch
from torch import nn

import rvi
from rvi.config import AttackConfig, BenchmarkConfig

SEEDS = (0, 1, 2)
ATTACK = AttackConfig(eps=0.1, alpha=0.04, steps=5)


class Template(nn.Module):
    """Logits ``<W_c, x> - <W_c, 1> / 2``: linear, so the Guided Backprop map of class c is W_c."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(weight[0].numel(), len(weight))
        with torch.no_grad():
            self.linear.weight.copy_(weight.flatten(1))
            self.linear.bias.copy_(-0.5 * weight.flatten(1).sum(1))

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.fixture(scope="module")
def data():
    return rvi.data.make_synthetic(500, 60, seed=0)


@pytest.fixture(scope="module")
def bar_masks(data):
    """(10, 1, 28, 28): where each class's training images are bright on average."""
    means = torch.stack([data.train_images[data.train_labels == c].mean(0) for c in range(10)])
    return (means > 0.5).float()


def first_halves(masks: torch.Tensor) -> torch.Tensor:
    """Each bar's first half along its length (horizontal bars for classes 0-4)."""
    out = masks.clone()
    for c in range(len(masks)):
        pixels = masks[c, 0].nonzero()
        along = pixels[:, 1 if c < 5 else 0]
        drop = pixels[along > along.float().median()]
        out[c, 0, drop[:, 0], drop[:, 1]] = 0
    return out


def model_sets(weight: torch.Tensor, robust_noise: float, natural_noise: float) -> list:
    """One {natural, robust} pair of templates per seed, each weight plus N(0, noise^2)."""
    def noisy(noise, seed):
        generator = torch.Generator().manual_seed(seed)
        return Template(weight + noise * torch.randn(weight.shape, generator=generator))
    return [{"natural": noisy(natural_noise, 100 + s), "robust": noisy(robust_noise, 200 + s)}
            for s in SEEDS]


def verdicts_of(sets: list, data, metrics: tuple) -> dict:
    config = BenchmarkConfig(attack=ATTACK, methods=("guided_backprop",), metrics=metrics,
                             eval_attacks=("pgd",), bootstrap=200, cascade_n=20, grid_images=2,
                             seeds=SEEDS, batch_size=128, randomization_draws=3,
                             controls=("random_weights", "image", "edge", "noise", "cascading"))
    result = rvi.compare(sets, data.test_images, data.test_labels, config)
    return {row["metric"]: row["verdict"] for row in result.verdict_rows}


CLEANLINESS = ("cosine", "foreground_mass", "gini")


def test_cleanliness_verdicts_are_supported_for_bar_maps_against_noisy_maps(data, bar_masks):
    """The robust template's maps are its class's bar; the natural one's are noise over the bar.
    Every condition holds: cleaner, above random weights, edge and noise maps (the image map is
    cosine's and foreground_mass's reference), the randomized end less clean, robust to PGD."""
    found = verdicts_of(model_sets(bar_masks, 0.02, 0.3), data, CLEANLINESS)
    assert found == dict.fromkeys(CLEANLINESS, "supported for the training methods")


def test_cleanliness_verdicts_are_not_supported_when_the_robust_maps_are_the_noisy_ones(
        data, bar_masks):
    """The same pair with the roles swapped: the model called robust has the noisy maps (and is
    the easier one to attack)."""
    found = verdicts_of(model_sets(bar_masks, 0.3, 0.02), data, CLEANLINESS)
    assert all(v.startswith("not supported (fails: difference") for v in found.values()), found
    assert all("accuracy" in v for v in found.values()), found


def test_faithfulness_verdict_is_supported_when_the_map_ranks_what_the_model_uses(
        data, bar_masks):
    """The robust template uses half of each bar and its map ranks exactly those pixels first;
    the natural template's noisy weights make its map rank dark background pixels (which change
    its logit by nothing) among the first. The trivial maps (image, edge, noise: the whole bar
    or its outline first) are beaten by the model that uses half of it."""
    found = verdicts_of(model_sets(first_halves(bar_masks), 0.02, 0.6), data, ("deletion_gain",))
    assert found == {"deletion_gain": "supported for the training methods"}


def test_faithfulness_verdicts_are_not_supported_without_a_difference(data, bar_masks):
    """Swapped roles fail the difference. And for linear models the map explains every logit
    change under noise exactly (1 - R^2 = 0 for both): no difference, not supported."""
    swapped = verdicts_of(model_sets(first_halves(bar_masks), 0.6, 0.02), data,
                          ("deletion_gain", "infidelity_unexplained"))
    assert swapped["deletion_gain"].startswith("not supported (fails: difference"), swapped
    assert swapped["infidelity_unexplained"].startswith("not supported (fails: difference"), \
        swapped
