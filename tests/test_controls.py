"""Tests for rvi/scoring/controls.py: random weights, cascading randomization, trivial explainers."""

import pytest
import torch

from rvi.scoring.controls import (
    TRIVIAL_EXPLAINERS, cascading_randomization, control_scores, edge_map, image_map, noise_map,
    parameter_layers, random_weights_model,
)
from rvi.metrics.basic import alignment, cleanliness
from rvi.attribution.saliency import explain


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_random_weights_model_from_name_is_seeded():
    state = torch.get_rng_state()
    first, second = random_weights_model("lenet", 3), random_weights_model("lenet", 3)
    assert torch.equal(torch.get_rng_state(), state)
    assert _same_weights(first, second)
    assert not _same_weights(first, random_weights_model("lenet", 4))


def test_random_weights_model_copies_and_leaves_original(lenet):
    lenet[0].weight.requires_grad_(False)
    original = {k: v.clone() for k, v in lenet.state_dict().items()}
    random = random_weights_model(lenet, seed=1)
    assert all(torch.equal(v, lenet.state_dict()[k]) for k, v in original.items())
    assert all(not torch.equal(p, q) for p, q in zip(random.parameters(), lenet.parameters()))
    assert not random.training and not random[0].weight.requires_grad
    assert _same_weights(random, random_weights_model(lenet, seed=1))


def test_random_weights_model_bad_arguments(lenet):
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        random_weights_model(lenet, -1)
    with pytest.raises(ValueError, match="model must be one of"):
        random_weights_model("resnet", 0)
    with pytest.raises(ValueError, match="architecture_or_model must be"):
        random_weights_model(3, 0)

    class Raw(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

    with pytest.raises(ValueError, match="cannot re-initialize module '' .*reset_parameters"):
        random_weights_model(Raw(), 0)


def test_parameter_layers_in_forward_order(lenet):
    assert parameter_layers(lenet, torch.rand(1, 1, 28, 28)) == ["0", "3", "7", "9", "11"]


def test_cascading_randomization(lenet, batch):
    images, labels = batch[0][:6], batch[1][:6]
    before = {k: v.clone() for k, v in lenet.state_dict().items()}
    steps = cascading_randomization(lenet, images, labels, "cosine", "guided_backprop")
    assert [name for name, _ in steps] == ["none", "11", "9", "7", "3", "0"]
    assert all(isinstance(score, float) and 0 <= score <= 1 for _, score in steps)
    assert all(torch.equal(v, lenet.state_dict()[k]) for k, v in before.items())
    own = cleanliness(explain(lenet, images, labels).maps, images, "cosine")
    assert steps[0][1] == pytest.approx(float(own.mean()))
    assert steps[1][1] != pytest.approx(steps[0][1])
    # the alignment metric re-scores each randomized model itself
    aligned = cascading_randomization(lenet, images, labels, "alignment")
    assert len(aligned) == 6 and all(score >= 0 for _, score in aligned)


def test_cascading_randomization_bad_arguments(lenet, batch):
    images, labels = batch
    with pytest.raises(ValueError, match="metric must be one of .*; got 'ssim'"):
        cascading_randomization(lenet, images, labels, "ssim")
    with pytest.raises(ValueError, match="method must be one of .*; got 'lrp'"):
        cascading_randomization(lenet, images, labels, "cosine", "lrp")
    with pytest.raises(ValueError, match=r"target must be an int64 tensor of shape \(16,\)"):
        cascading_randomization(lenet, images, labels[:3])
    with pytest.raises(ValueError, match=r"images must be in \[0, 1\]"):
        cascading_randomization(lenet, images * 2, labels)


def test_image_and_edge_maps_by_hand():
    step = torch.zeros(1, 1, 5, 6)
    step[..., 3:] = 1.0  # a vertical edge between columns 2 and 3
    assert torch.equal(image_map(step), step)
    edges = edge_map(step)
    expected = torch.zeros(1, 1, 5, 6)
    expected[..., 2:4] = 4.0  # Sobel x: (1 + 2 + 1) across the step, replicate padding
    torch.testing.assert_close(edges, expected)
    torch.testing.assert_close(edge_map(torch.full((2, 3, 4, 4), 0.7)), torch.zeros(2, 1, 4, 4))
    color = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(image_map(color), color.sum(1, keepdim=True))


def test_noise_map_is_seeded_and_leaves_global_rng():
    images = torch.rand(3, 1, 4, 4)
    state = torch.get_rng_state()
    first = noise_map(images, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, noise_map(images, seed=5))
    assert not torch.equal(first, noise_map(images, seed=6))
    assert first.shape == (3, 1, 4, 4) and ((first >= 0) & (first < 1)).all()


@pytest.mark.parametrize("name", sorted(TRIVIAL_EXPLAINERS))
def test_trivial_explainers_refuse_bad_images(name):
    with pytest.raises(ValueError, match="images must"):
        TRIVIAL_EXPLAINERS[name](torch.rand(4, 4))
    with pytest.raises(ValueError, match="images must be finite"):
        TRIVIAL_EXPLAINERS[name](torch.full((1, 1, 4, 4), float("nan")))


def test_control_scores(lenet, batch):
    images, labels = batch[0][:6], batch[1][:6]
    scores = control_scores(lenet, images, "true", labels=labels, metric="cosine")
    assert list(scores) == ["model", "random_weights", "plain_gradient", "image", "edge", "noise"]
    assert all(s.shape == (6,) and torch.isfinite(s).all() for s in scores.values())
    torch.testing.assert_close(scores["image"], torch.ones(6))
    own = cleanliness(explain(lenet, images, labels).maps, images, "cosine")
    torch.testing.assert_close(scores["model"], own)
    plain = cleanliness(explain(lenet, images, labels, "saliency").maps, images, "cosine")
    torch.testing.assert_close(scores["plain_gradient"], plain)
    aligned = control_scores(lenet, images, "predicted", metric="alignment")
    assert list(aligned) == ["model", "random_weights"]  # alignment ignores the map
    torch.testing.assert_close(aligned["model"], alignment(lenet, images))
    with pytest.raises(ValueError, match="target='true' needs labels"):
        control_scores(lenet, images, "true")
    with pytest.raises(ValueError, match="target must be one of true, predicted or an .* got 'best'"):
        control_scores(lenet, images, "best")
