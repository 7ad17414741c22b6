"""Tests for rvi/metrics/basic.py: reference values, invariants, edge cases and bad inputs."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from rvi.metrics import faithfulness, quantus as quantus_metrics, relative
from rvi.metrics.basic import (
    METRICS, MetricInfo, alignment, alignment_margin, cleanliness, cosine,
    foreground_mass, gini, inner, metric_images_per_call, score, zero_maps,
)
from rvi.attribution.saliency import explain

#: rvi's own metrics; the quantus:NAME ones (rvi.metrics.quantus) are tested in test_quantus.py
OWN = tuple(name for name in METRICS if not name.startswith(quantus_metrics.PREFIX))


@pytest.fixture
def pair():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(5, 1, 6, 6, generator=generator)
    maps = torch.rand(5, 1, 6, 6, generator=generator)
    return maps, images


def test_inner_equals_direct_dot_product(pair):
    maps, images = pair
    expected = torch.tensor([sum(float(a) * float(b) for a, b in zip(s.flatten(), x.flatten()))
                             for s, x in zip(maps, images)])
    torch.testing.assert_close(inner(maps, images), expected)
    torch.testing.assert_close(cleanliness(maps, images, "inner"), expected)


def test_cosine_reference_and_scale_invariance(pair):
    maps, images = pair
    expected = torch.tensor([
        float(s.flatten() @ x.flatten()) / (float(s.norm()) * float(x.norm()))
        for s, x in zip(maps, images)])
    torch.testing.assert_close(cosine(maps, images), expected)
    torch.testing.assert_close(cosine(maps * 7.3, images), expected)
    torch.testing.assert_close(cosine(maps * 1e-6, images), expected)
    torch.testing.assert_close(cosine(images, images), torch.ones(5))
    scores = cleanliness(maps, images, "cosine")
    assert ((scores >= 0) & (scores <= 1)).all()
    # inner is not scale-free
    torch.testing.assert_close(inner(maps * 2, images), 2 * inner(maps, images))


def test_foreground_mass_by_hand():
    image = torch.tensor([[0.9, 0.2], [0.6, 0.0]]).reshape(1, 1, 2, 2)
    saliency = torch.tensor([[1.0, 2.0], [-3.0, 4.0]]).reshape(1, 1, 2, 2)
    # |s| on pixels > 0.5: 1 + 3 = 4 of a total of 10
    torch.testing.assert_close(foreground_mass(saliency, image), torch.tensor([0.4]))
    torch.testing.assert_close(cleanliness(saliency, image, "foreground_mass"), torch.tensor([0.4]))
    torch.testing.assert_close(foreground_mass(saliency, image, threshold=0.7),
                               torch.tensor([0.1]))


def _linear_model(weight: torch.Tensor) -> nn.Sequential:
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weight)
    return model


def test_alignment_on_linear_model_by_hand():
    weight = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    model = _linear_model(weight)
    images = torch.tensor([[1.0, 0.5, 0.0, 0.0],   # logits (5, 0, 1.5): class 0, |5| / 5 = 1
                           [0.0, 0.0, 1.0, 0.0],   # (0, 1, 1): tie -> argmax 1, 1 / 1 = 1
                           [0.2, 0.0, 0.9, 0.8]])  # (0.6, 0.9, 1.9): class 2, 1.9 / 2 = 0.95
    images = images.reshape(3, 1, 2, 2)
    expected = torch.tensor([1.0, 1.0, 0.95])
    torch.testing.assert_close(alignment(model, images), expected)
    torch.testing.assert_close(cleanliness(None, images, "alignment", model=model), expected)
    torch.testing.assert_close(alignment(model, images, batch_size=1), expected)


def test_alignment_zero_gradient_and_state_restored():
    model = _linear_model(torch.zeros(2, 4)).train()
    model[1].weight.requires_grad_(False)
    scores = alignment(model, torch.rand(3, 1, 2, 2))
    assert torch.equal(scores, torch.zeros(3))
    assert model.training and not model[1].weight.requires_grad
    assert model[1].weight.grad is None


def test_all_zero_maps_and_images_score_zero(pair):
    maps, images = pair
    maps = maps.clone()
    maps[1] = 0
    maps[3] = 0
    images = images.clone()
    images[2] = 0
    for kind in ("inner", "cosine", "foreground_mass"):
        scores = cleanliness(maps, images, kind)
        assert torch.isfinite(scores).all()
        assert scores[1] == 0 and scores[3] == 0, kind
    assert cosine(maps, images)[2] == 0 and inner(maps, images)[2] == 0
    assert foreground_mass(maps, images)[2] == 0
    assert zero_maps(maps).tolist() == [False, True, False, True, False]


def test_color_image_compared_by_channel_mean():
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(2, 3, 4, 4, generator=generator)
    saliency = torch.rand(2, 1, 4, 4, generator=generator)
    torch.testing.assert_close(cosine(saliency, image), cosine(saliency, image.mean(1, True)))
    full = torch.rand(2, 3, 4, 4, generator=generator)
    assert cosine(full, image).shape == (2,)


def test_registry_is_data():
    assert set(METRICS) == {"inner", "cosine", "foreground_mass", "alignment", "alignment_logit",
                            "alignment_margin", "gini", "deletion", "insertion", "deletion_gain",
                            "deletion_gain_blur", "lerf_morf", "infidelity", "sensitivity_max",
                            "infidelity_unexplained"} | {
        "quantus:Sparseness", "quantus:PixelFlipping", "quantus:Infidelity",
        "quantus:MaxSensitivity", "quantus:ROAD", "quantus:RandomLogit"}
    for name, info in METRICS.items():
        assert isinstance(info, MetricInfo) and info.name == name
        assert info.low < info.high and isinstance(info.higher_is_better, bool)
        assert info.description and info.cannot_show
        assert info.family in ("cleanliness", "faithfulness")
        assert not info.needs_targets or info.needs_model
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.name = "other"
    assert METRICS["alignment"].needs_model and not METRICS["alignment"].uses_map
    assert not METRICS["cosine"].needs_model and METRICS["cosine"].high == 1.0
    assert METRICS["inner"].high == math.inf


def test_metrics_keep_their_order():
    """Tables list metrics in this order: rvi.metrics.basic registers its own, then rvi.metrics.faithfulness,
    then rvi.metrics.relative, then rvi.metrics.quantus."""
    assert tuple(METRICS)[:len(OWN)] == OWN
    assert OWN == ("inner", "cosine", "foreground_mass", "alignment_logit", "alignment",
                   "alignment_margin", "gini", "deletion", "insertion", "infidelity",
                   "sensitivity_max", "deletion_gain", "deletion_gain_blur",
                   "lerf_morf", "infidelity_unexplained")


def test_each_metric_is_registered_next_to_its_function():
    for name in ("inner", "cosine", "foreground_mass", "alignment_logit", "alignment_margin", "gini"):
        assert METRICS[name].function.__module__ == "rvi.metrics.basic", name
    for name in ("deletion", "insertion", "infidelity", "sensitivity_max"):
        assert METRICS[name].function.__module__ == "rvi.metrics.faithfulness", name
    for name in ("deletion_gain", "deletion_gain_blur", "lerf_morf", "infidelity_unexplained"):
        assert METRICS[name].function.__module__ == "rvi.metrics.relative", name
    assert METRICS["alignment"].function is METRICS["alignment_logit"].function


@pytest.fixture
def scored(lenet, batch):
    images, labels = batch
    images, labels = images[:6], labels[:6]
    maps = explain(lenet, images, "true", "saliency", labels=labels, absolute=False).maps
    return lenet, images, labels, maps


def test_score_equals_the_public_functions(scored):
    model, images, labels, maps = scored
    s = maps.abs()
    direct = {
        "inner": inner(s, images), "cosine": cosine(s, images),
        "foreground_mass": foreground_mass(s, images), "gini": gini(s),
        "alignment": alignment(model, images, batch_size=40),
        "alignment_logit": alignment(model, images, batch_size=40),
        "alignment_margin": alignment_margin(model, images, batch_size=40),
        "deletion": faithfulness.deletion(model, images, s, labels, batch_size=40),
        "insertion": faithfulness.insertion(model, images, s, labels, batch_size=40),
        "deletion_gain": relative.deletion_gain(model, images, s, labels, seed=1, batch_size=40),
        "deletion_gain_blur": relative.deletion_gain(model, images, s, labels, seed=1,
                                                     baseline="blur", batch_size=40),
        "lerf_morf": relative.lerf_morf(model, images, s, labels, batch_size=40),
        "infidelity_unexplained": relative.infidelity_unexplained(model, images, s, labels,
                                                                  seed=1, batch_size=40),
        "infidelity": faithfulness.infidelity(model, images, s, labels, seed=1, batch_size=40),
        "sensitivity_max": faithfulness.sensitivity_max(model, images, labels, "saliency", seed=1,
                                                        batch_size=40),
    }
    assert set(direct) == set(OWN)
    for name, expected in direct.items():
        got = score(name, s, images, model=model, targets=labels, method="saliency", seed=1,
                    batch_size=40)
        assert torch.equal(got, expected), name


def test_uses_sign_says_whether_a_signed_map_scores_differently(scored):
    model, images, labels, maps = scored
    assert bool((maps < 0).any())
    for name in OWN:
        info = METRICS[name]
        kwargs = dict(model=model, targets=labels, method="saliency", batch_size=64)
        signed = score(name, maps, images, **kwargs)
        absolute = score(name, maps.abs(), images, **kwargs)
        assert torch.equal(signed, absolute) != info.uses_sign, name


def test_shard_blocks_of_the_metrics():
    """infidelity draws INFIDELITY_DRAWS and sensitivity_max PERTURB_SAMPLES perturbations per
    image in each call; the others add no block of their own (deletion/insertion on purpose)."""
    assert faithfulness.PERTURB_SAMPLES == 10 and faithfulness.INFIDELITY_DRAWS == 100
    for name in METRICS:
        expected = {"sensitivity_max": 25, "infidelity": 2,
                    "infidelity_unexplained": 2}.get(name, 250)
        assert metric_images_per_call(name, 250) == expected, name
    assert metric_images_per_call("infidelity", 7) == 1
    assert METRICS["deletion"].images_per_call(250) == 250 // (faithfulness.CURVE_STEPS + 1) == 11
    assert METRICS["cosine"].images_per_call(250) == 250 and METRICS["cosine"].passes_per_image == 0
    assert METRICS["alignment_margin"].images_per_call(250) == 250
    with pytest.raises(ValueError, match="metric must be one of inner, .*; got 'ssim'"):
        metric_images_per_call("ssim", 250)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        metric_images_per_call("cosine", 0)


@pytest.mark.parametrize("saliency, image, message", [
    (torch.rand(2, 1, 4, 4), torch.rand(3, 1, 4, 4), "matching shapes"),
    (torch.rand(2, 1, 4, 5), torch.rand(2, 1, 4, 4), "matching shapes"),
    (torch.rand(2, 2, 4, 4), torch.rand(2, 3, 4, 4), "matching shapes"),
    (torch.rand(2, 4, 4), torch.rand(2, 1, 4, 4), "saliency must be a float tensor"),
    (torch.rand(2, 1, 4, 4), torch.rand(2, 4, 4), "image must be a float tensor"),
    (torch.rand(2, 1, 4, 4), torch.ones(2, 1, 4, 4, dtype=torch.int64), "image must be a float"),
    (torch.rand(2, 1, 4, 4), -torch.rand(2, 1, 4, 4), "image must be non-negative"),
    (torch.full((2, 1, 4, 4), math.nan), torch.rand(2, 1, 4, 4), "saliency must be finite"),
    (torch.rand(2, 1, 4, 4), torch.full((2, 1, 4, 4), math.inf), "image must be finite"),
    ([1.0], torch.rand(2, 1, 4, 4), "saliency must be a float tensor"),
])
@pytest.mark.parametrize("kind", ["inner", "cosine", "foreground_mass"])
def test_bad_inputs(saliency, image, message, kind):
    with pytest.raises(ValueError, match=message):
        cleanliness(saliency, image, kind)


def test_bad_kind_and_missing_model(pair):
    maps, images = pair
    with pytest.raises(ValueError, match="metric must be one of inner, cosine, .*; got 'ssim'"):
        cleanliness(maps, images, "ssim")
    with pytest.raises(ValueError, match="metric .alignment. needs model="):
        cleanliness(maps, images, "alignment")
    model = _linear_model(torch.ones(2, 36))
    with pytest.raises(ValueError, match="matching shapes"):
        cleanliness(maps[:2], images, "alignment", model=model)
    with pytest.raises(ValueError, match="images must be non-negative"):
        alignment(model, -images)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        alignment(model, images, batch_size=0)


def test_every_metric_has_a_section_in_the_docs():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    for name in METRICS:
        assert f"`{name}`" in text, name
