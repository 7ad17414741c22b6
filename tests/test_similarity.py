"""Tests for rvi.metrics.similarity: map similarities and the randomization test."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from rvi.scoring.controls import randomization_similarity
from rvi.metrics.similarity import SIMILARITIES, hog_similarity, spearman, ssim


def _maps(n=4, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) ** 2


@pytest.mark.parametrize("name", sorted(SIMILARITIES))
def test_self_similarity_is_one(name):
    maps = _maps()
    maps[1] = 0.0  # an all-zero map is identical to itself too
    torch.testing.assert_close(SIMILARITIES[name](maps, maps.clone()),
                               torch.ones(4, dtype=torch.float64))


def test_similarities_ignore_scale_and_sign():
    maps = _maps()
    for name, measure in SIMILARITIES.items():
        torch.testing.assert_close(measure(maps, -3 * maps), torch.ones(4, dtype=torch.float64),
                                   msg=name)


def test_spearman_matches_scipy_and_independent_maps_are_near_zero():
    a, b = _maps(50, 1), _maps(50, 2)
    got = spearman(a, b)
    for i in range(5):
        ref = spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert float(got[i]) == pytest.approx(ref, abs=1e-9)
    assert abs(float(got.mean())) < 0.02 and float(got.abs().max()) < 0.15
    assert float(ssim(a, b).mean()) < 0.2 and abs(float(hog_similarity(a, b).mean())) < 0.2
    # an order-preserving transform keeps the rank correlation at 1
    torch.testing.assert_close(spearman(a, a.sqrt() + 1), torch.ones(50, dtype=torch.float64))


def test_hog_describes_each_map_once_and_a_changed_map_again(monkeypatch):
    import skimage.feature

    import rvi.metrics.similarity as similarity

    a, b, c = _maps(3, 1), _maps(3, 2), _maps(3, 3)
    pairs = ((a, b), (c, b), (a.roll(1, 0), b), (a, c))
    similarity._HOG_MEMO.clear()
    expected = [hog_similarity(x.clone(), ref.clone()) for x, ref in pairs]
    similarity._HOG_MEMO.clear()
    described = []
    real = skimage.feature.hog
    monkeypatch.setattr(skimage.feature, "hog", lambda m, **kw: described.append(1) or real(m, **kw))
    for (x, ref), want in zip(pairs[:3], expected):
        torch.testing.assert_close(hog_similarity(x, ref), want)
    assert len(described) == 9  # the 9 maps of a, b and c, each once (a rolled: the same maps)
    b.copy_(c)  # changed in place: now c's maps, already described
    torch.testing.assert_close(hog_similarity(a, b), expected[3])
    assert len(described) == 9
    b.add_(0.5)  # new maps: described
    hog_similarity(a, b)
    assert len(described) == 12


def test_hog_memo_keeps_only_the_most_recent_maps(monkeypatch):
    import rvi.metrics.similarity as similarity

    monkeypatch.setattr(similarity, "_HOG_MEMO_SIZE", 4)
    similarity._HOG_MEMO.clear()
    maps = _maps(6, 4)
    hog_similarity(maps, maps.flip(0))
    assert len(similarity._HOG_MEMO) == 4


def test_constant_map_has_zero_similarity_to_other_maps():
    a = _maps(2)
    b = torch.ones_like(a)
    assert spearman(a, b).tolist() == [0.0, 0.0]


class _InputIsTheMap(nn.Module):
    """Logits 0.5 ||x||^2 + linear(0): the input gradient is x whatever the weights are."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(1, 10)

    def forward(self, x):
        return 0.5 * (x ** 2).flatten(1).sum(1, keepdim=True) + self.head(x.new_zeros(len(x), 1))


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_weight_free_map_passes_as_identical(batch, mode):
    images, labels = batch
    result = randomization_similarity(_InputIsTheMap(), images[:4], labels[:4], "saliency", mode)
    assert [name for name, _ in result] == ["head"]
    for measure, values in result[0][1].items():
        torch.testing.assert_close(values, torch.ones(4, dtype=torch.float64), msg=measure)


def test_plain_gradient_of_lenet_decorrelates(lenet, batch):
    images, labels = batch
    before = [p.clone() for p in lenet.parameters()]
    state = torch.get_rng_state()
    cascade = randomization_similarity(lenet, images[:8], labels[:8], "saliency", "cascading",
                                       measures=("spearman",))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(before, lenet.parameters()))
    assert [name for name, _ in cascade] == ["11", "9", "7", "3", "0"]
    assert float(cascade[-1][1]["spearman"].mean()) < 0.5
    independent = randomization_similarity(lenet, images[:8], labels[:8], "saliency",
                                           "independent", measures=("spearman",))
    # the output layer comes first in both modes and is randomized identically
    torch.testing.assert_close(independent[0][1]["spearman"], cascade[0][1]["spearman"])


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "lime"}, "method must be one of"),
    ({"mode": "both"}, "mode must be one of"),
    ({"measures": ("pearson",)}, "measures must be"),
    ({"measures": ()}, "measures must be"),
    ({"seed": -1}, "seed"),
])
def test_randomization_bad_arguments(lenet, batch, kwargs, message):
    images, labels = batch
    with pytest.raises(ValueError, match=message):
        randomization_similarity(lenet, images[:2], labels[:2], **kwargs)


@pytest.mark.parametrize("a, b, message", [
    (np.zeros((2, 1, 8, 8)), torch.zeros(2, 1, 8, 8), "a must be a float tensor"),
    (torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 9), "same shape"),
    (torch.zeros(2, 1, 8, 8), torch.full((2, 1, 8, 8), float("nan")), "b must be finite"),
])
def test_similarity_bad_inputs(a, b, message):
    with pytest.raises(ValueError, match=message):
        spearman(a, b)
    with pytest.raises(ValueError, match="at least 7 x 7"):
        ssim(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 5, 5))
