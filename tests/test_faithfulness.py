"""Tests for rvi.metrics.faithfulness and the general entry point rvi.metrics.score."""

import inspect
import math

import numpy as np
import pytest
import torch
from torch import nn

from rvi.metrics import faithfulness as F
from rvi.metrics import relative as R
from rvi._core.checks import installed
from rvi.metrics.basic import METRICS, alignment, alignment_margin, cleanliness, gini, score
from rvi.attribution.saliency import explain

needs_quantus = pytest.mark.skipif(not installed("quantus"),
                                   reason='Quantus is not installed (pip install "rvi[quantus]")')


def _linear(weight: torch.Tensor, bias=None) -> nn.Module:
    """(N, 1, H, W) -> (N, K) logits W x (+ b)."""
    k, d = weight.shape
    layer = nn.Linear(d, k, bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return nn.Sequential(nn.Flatten(), layer).eval()


def _scipy_blur(image):
    """(C, H, W) blurred by scipy: the same Gaussian as rvi.metrics.faithfulness.blurred, truncated at
    the same radius, torch's "reflect" padding being scipy's "mirror"."""
    from scipy.ndimage import gaussian_filter

    sigma = F.BLUR_SIGMA_FRACTION * max(image.shape[-2:])
    radius = math.ceil(2 * sigma)
    return torch.from_numpy(np.stack([gaussian_filter(channel.double().numpy(), sigma,
                                                      mode="mirror", truncate=radius / sigma)
                                      for channel in image])).to(image.dtype)


def _reference_curve(model, image, relevance, target, steps, mode, baseline=0.0):
    """Slow per-image, per-step reference: numpy stable argsort, one forward per step."""
    c, h, w = image.shape
    order = np.argsort(-relevance.flatten().numpy(), kind="stable")
    probs, fractions = [], []
    for k in range(steps + 1):
        count = k * h * w // steps
        mask = np.zeros(h * w, dtype=bool)
        mask[order[:count]] = True
        mask = torch.from_numpy(mask).reshape(1, h, w)
        base = _scipy_blur(image) if baseline == "blur" else torch.full_like(image, baseline)
        if mode == "deletion":
            x = torch.where(mask, base, image)
        else:
            x = torch.where(mask, image, base)
        with torch.no_grad():
            probs.append(float(model(x[None]).softmax(1)[0, target]))
        fractions.append(count / (h * w))
    area = sum((fractions[i + 1] - fractions[i]) * (probs[i] + probs[i + 1]) / 2
               for i in range(steps))
    return probs, area


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("steps, baseline", [(7, 0.0), (20, 0.0), (7, "blur")])
def test_curves_match_slow_reference(lenet, batch, mode, steps, baseline):
    images, _ = batch
    images = images[:4]
    maps = explain(lenet, images, "predicted").maps
    maps[0] = maps[0].round(decimals=1)  # plenty of ties: the stable rule must match
    targets = torch.tensor([0, 1, 2, 3])
    fractions, probs = F.perturbation_curves(lenet, images, maps, targets, mode, steps=steps,
                                             baseline=baseline, batch_size=13)
    scorer = F.deletion if mode == "deletion" else F.insertion
    auc = scorer(lenet, images, maps, targets, steps=steps, baseline=baseline, batch_size=5)
    for i in range(len(images)):
        ref_probs, ref_area = _reference_curve(lenet, images[i], maps[i, 0], int(targets[i]),
                                               steps, mode, baseline)
        np.testing.assert_allclose(probs[i].numpy(), ref_probs, rtol=1e-5, atol=1e-6)
        assert float(auc[i]) == pytest.approx(ref_area, rel=1e-5, abs=1e-6)
    assert fractions[0] == 0.0 and fractions[-1] == 1.0


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (1, 3, 32, 32), (1, 1, 9, 12)])
def test_blur_baseline_is_scipys_gaussian_filter(shape):
    images = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    blurred = F.blurred(images)
    assert blurred.shape == images.shape and 0 <= blurred.min() and blurred.max() <= 1
    if min(shape[-2:]) > 2 * math.ceil(2 * F.BLUR_SIGMA_FRACTION * max(shape[-2:])):
        for image, mine in zip(images, blurred):  # same kernel where it fits in the image
            torch.testing.assert_close(mine, _scipy_blur(image), rtol=0, atol=2e-6)
    # a constant image is its own blur: removing pixels to the blur changes nothing
    flat = torch.full(shape, 0.4)
    torch.testing.assert_close(F.blurred(flat), flat)


def test_blur_removal_of_a_constant_image_keeps_the_curve_flat(lenet):
    image = torch.full((1, 1, 28, 28), 0.4)
    maps = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    _, probs = F.perturbation_curves(lenet, image, maps, torch.tensor([3]), baseline="blur")
    torch.testing.assert_close(probs, probs[:, :1].expand_as(probs))
    _, black = F.perturbation_curves(lenet, image, maps, torch.tensor([3]))
    assert not torch.allclose(black, black[:, :1].expand_as(black))
    gain = R.deletion_gain(lenet, image, maps, torch.tensor([3]), baseline="blur")
    assert float(gain[0]) == pytest.approx(0.0, abs=1e-6)


@needs_quantus
def test_deletion_curve_matches_quantus_pixel_flipping():
    import quantus  # optional (the quantus extra)
    generator = torch.Generator().manual_seed(0)
    model = _linear(torch.randn(5, 36, generator=generator))
    images = torch.rand(3, 1, 6, 6, generator=generator) * 0.9 + 0.1
    maps = torch.rand(3, 1, 6, 6, generator=generator)  # no ties: Quantus' argsort is not stable
    targets = np.array([0, 2, 4])
    metric = quantus.PixelFlipping(features_in_step=1, normalise=False, abs=False,
                                   perturb_baseline=0.0, disable_warnings=True)
    ref = metric(model=model, x_batch=images.numpy(), y_batch=targets, a_batch=maps.numpy(),
                 softmax=True, device="cpu")
    _, probs = F.perturbation_curves(model, images, maps, torch.from_numpy(targets), "deletion",
                                     steps=36)
    # Quantus' curve starts after the first pixel is flipped; rvi's starts at the intact image
    np.testing.assert_allclose(probs[:, 1:].numpy(), np.asarray(ref), rtol=1e-5, atol=1e-7)


def test_deletion_known_answer_linear_model():
    # two classes, logit_0 = <w, x>, logit_1 = 0: p_0 = sigmoid(<w, x>)
    w = torch.tensor([4.0, -1.0, 2.0, 3.0])
    model = _linear(torch.stack([w, torch.zeros(4)]))
    x = torch.tensor([1.0, 0.5, 0.25, 1.0]).reshape(1, 1, 2, 2)
    contributions = w * x.flatten()
    maps = contributions.reshape(1, 1, 2, 2)
    targets = torch.tensor([0])
    ranked = contributions.sort(descending=True).values           # 4, 3, 0.5, -0.5
    remaining = contributions.sum() - torch.cat([torch.zeros(1), ranked.cumsum(0)])
    expected = torch.sigmoid(remaining)                           # deletion curve, pixel by pixel
    _, probs = F.perturbation_curves(model, x, maps, targets, "deletion", steps=4)
    torch.testing.assert_close(probs[0], expected)
    trapezoid = float(((expected[1:] + expected[:-1]) / 2).sum() / 4)
    assert float(F.deletion(model, x, maps, targets, steps=4)[0]) == pytest.approx(trapezoid)
    inserted = torch.sigmoid(torch.cat([torch.zeros(1), ranked.cumsum(0)]))
    _, probs = F.perturbation_curves(model, x, maps, targets, "insertion", steps=4)
    torch.testing.assert_close(probs[0], inserted)
    # the faithful order deletes faster than the reverse order
    reverse = F.deletion(model, x, -maps, targets, steps=4)
    assert float(F.deletion(model, x, maps, targets, steps=4)[0]) < float(reverse[0])


def test_model_relative_deletion_known_answers_linear_model():
    """On the linear model above: LeRF - MoRF of the exact contributions is the reverse order's
    deletion AUC minus the faithful one's (computed from the pixel-by-pixel curves); a constant
    map orders pixels the same both ways, so it scores exactly 0; flipping the map's sign flips
    the score's; deletion_gain lies in [-1, 1]."""
    w = torch.tensor([4.0, -1.0, 2.0, 3.0])
    model = _linear(torch.stack([w, torch.zeros(4)]))
    x = torch.tensor([1.0, 0.5, 0.25, 1.0]).reshape(1, 1, 2, 2)
    contributions = w * x.flatten()
    maps, targets = contributions.reshape(1, 1, 2, 2), torch.tensor([0])

    def area(order):  # deletion AUC of removing the pixels in this order, by the trapezoid rule
        remaining = contributions.sum() - torch.cat([torch.zeros(1), contributions[order].cumsum(0)])
        curve = torch.sigmoid(remaining)
        return float(((curve[1:] + curve[:-1]) / 2).sum() / 4)

    morf = contributions.argsort(descending=True)
    expected = area(morf.flip(0)) - area(morf)
    assert float(R.lerf_morf(model, x, maps, targets, steps=4)[0]) == pytest.approx(expected)
    assert expected > 0
    flat = torch.ones_like(maps)
    assert float(R.lerf_morf(model, x, flat, targets, steps=4)[0]) == 0.0
    assert float(R.lerf_morf(model, x, -maps, targets, steps=4)[0]) == pytest.approx(-expected)
    gain = R.deletion_gain(model, x, maps, targets, steps=4, seed=3)
    assert -1 <= float(gain[0]) <= 1


def test_deletion_gain_is_seeded_per_image_and_batch_free(lenet, batch):
    """Each image's random order depends on (seed, image index) only: the same scores in one
    call, in small batches, and in two shards with offsets; another seed changes them."""
    images, labels = batch
    images, labels = images[:10], labels[:10]
    maps = explain(lenet, images, "true", "saliency", labels=labels).maps
    whole = R.deletion_gain(lenet, images, maps, labels, seed=5)
    small = R.deletion_gain(lenet, images, maps, labels, seed=5, batch_size=21)
    parts = torch.cat([R.deletion_gain(lenet, images[:4], maps[:4], labels[:4], seed=5),
                       R.deletion_gain(lenet, images[4:], maps[4:], labels[4:], seed=5,
                                       offset=4)])
    torch.testing.assert_close(small, whole)
    torch.testing.assert_close(parts, whole)
    assert not torch.equal(R.deletion_gain(lenet, images, maps, labels, seed=6), whole)
    random = F.deletion(lenet, images, maps, labels) + whole  # the random order's own AUC
    assert ((random >= 0) & (random <= 1)).all()


def test_curves_ties_in_row_major_order():
    model = _linear(torch.stack([torch.arange(4.0), torch.zeros(4)]))
    x = torch.ones(1, 1, 2, 2)
    flat = torch.zeros(1, 1, 2, 2)  # all tied: pixels go in order 0, 1, 2, 3
    _, probs = F.perturbation_curves(model, x, flat, torch.tensor([0]), "deletion", steps=4)
    expected = torch.sigmoid(torch.tensor([6.0, 6.0, 5.0, 3.0, 0.0]))
    torch.testing.assert_close(probs[0], expected)


def test_curves_channels_and_bounds(lenet, batch):
    images, _ = batch
    color = images[:3].repeat(1, 3, 1, 1) * 0.5
    model = nn.Sequential(nn.Conv2d(3, 1, 1), lenet).eval()
    maps = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([1, 2, 3])
    for scorer in (F.deletion, F.insertion):
        auc = scorer(model, color, maps, targets)
        assert auc.shape == (3,) and bool(((auc >= 0) & (auc <= 1)).all())
        full = scorer(model, color, maps.repeat(1, 3, 1, 1), targets)
        torch.testing.assert_close(auc, full)


def _linear_case():
    """A seeded 3-class linear model on 4x4 images, five images, their targets, the exact
    attribution (f_t(x) - f_t(x - I) = <w_t, I> exactly) and the generator for further draws."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 16, generator=generator)
    images = torch.rand(5, 1, 4, 4, generator=generator)
    targets = torch.tensor([0, 1, 2, 0, 1])
    return _linear(weight), images, targets, weight[targets].reshape(5, 1, 4, 4), generator


def test_infidelity_zero_for_exact_linear_attribution():
    model, images, targets, exact, generator = _linear_case()
    scores = F.infidelity(model, images, exact, targets)
    assert float(scores.abs().max()) < 1e-5
    wrong = F.infidelity(model, images, torch.rand(5, 1, 4, 4, generator=generator), targets)
    assert bool((wrong > 100 * scores.abs().max()).all())


def test_infidelity_scale_invariant_seeded_and_batch_free(lenet, batch):
    images, _ = batch
    maps = explain(lenet, images, "predicted", absolute=False).maps
    targets = explain(lenet, images, "predicted").target
    state = torch.get_rng_state()
    first = F.infidelity(lenet, images, maps, targets, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(F.infidelity(lenet, images, 5 * maps, targets, seed=3,
                                            batch_size=7), first, rtol=1e-3, atol=1e-12)
    assert not torch.equal(F.infidelity(lenet, images, maps, targets, seed=4), first)


def _unexplained_reference(model, images, maps, targets, seed, samples=F.INFIDELITY_DRAWS,
                           std=F.INFIDELITY_NOISE_STD):
    """1 - R^2 written out: the same seeded perturbations, Δf and <I, s> per draw, the uncentred
    R^2 of a least-squares line through the origin."""
    out = []
    for i in range(len(images)):
        noise = F.per_image_draws(seed, i, 1, samples, tuple(images.shape[1:]), "normal") * std
        x = images[i:i + 1]
        with torch.no_grad():
            change = (model(x)[0, targets[i]] - model(x - noise)[:, targets[i]]).double()
        dot = (noise * maps[i:i + 1]).flatten(1).sum(1).double()
        r2 = (dot @ change) ** 2 / ((dot @ dot) * (change @ change))
        out.append(1 - r2)
    return torch.stack(out)


def test_infidelity_unexplained_is_one_minus_r2(lenet, batch):
    images, labels = batch
    images, labels = images[:5], labels[:5]
    maps = explain(lenet, images, "true", "saliency", labels=labels, absolute=False).maps
    got = R.infidelity_unexplained(lenet, images, maps, labels, seed=2)
    expected = _unexplained_reference(lenet.eval(), images, maps, labels, seed=2)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)
    assert bool(((got >= 0) & (got <= 1)).all())
    # scale-free in the map and in the logit: scaling the model's output scales Δf only
    scaled = nn.Sequential(lenet, _Scale(50.0))
    torch.testing.assert_close(R.infidelity_unexplained(scaled, images, 3 * maps, labels, seed=2),
                               got, rtol=1e-3, atol=1e-5)
    raw = F.infidelity(lenet, images, maps, labels, seed=2)
    raw_scaled = F.infidelity(scaled, images, maps, labels, seed=2)
    assert bool((raw_scaled > 100 * raw).all())  # raw infidelity grows with the logit's scale


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


def test_infidelity_unexplained_known_answers():
    model, images, targets, exact, generator = _linear_case()
    assert float(R.infidelity_unexplained(model, images, exact, targets).max()) < 1e-5
    unrelated = torch.rand(5, 1, 4, 4, generator=generator)
    assert float(R.infidelity_unexplained(model, images, unrelated, targets).min()) > 0.05
    flat = _linear(torch.zeros(3, 16))  # the logit never changes: nothing explained
    assert R.infidelity_unexplained(flat, images, exact, targets).tolist() == [1.0] * 5


def test_sensitivity_zero_for_constant_gradient_and_positive_for_lenet(lenet, batch):
    images, _ = batch
    images = images[:4]
    model = _linear(torch.randn(10, 784, generator=torch.Generator().manual_seed(0)))
    targets = torch.tensor([0, 3, 5, 9])
    assert float(F.sensitivity_max(model, images, targets, "saliency").max()) == 0.0
    state = torch.get_rng_state()
    deep = F.sensitivity_max(lenet, images, targets, "guided_backprop", n_perturb_samples=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert bool((deep > 0).all())
    again = F.sensitivity_max(lenet, images, targets, "guided_backprop", n_perturb_samples=4,
                              batch_size=5)
    torch.testing.assert_close(again, deep)


def _gini_mean_difference(a: np.ndarray) -> float:
    """Reference: G = sum_ij |a_i - a_j| / (2 n sum a), no sorting."""
    a = np.abs(a.ravel()).astype(np.float64)
    if a.sum() == 0:
        return 0.0
    return float(np.abs(a[:, None] - a[None, :]).sum() / (2 * a.size * a.sum()))


def test_gini_against_mean_difference_and_bounds():
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(5, 1, 6, 6, generator=generator) ** 3
    maps[1] = 1.0
    maps[2] = 0.0
    maps[3] = 0.0
    maps[3, 0, 2, 2] = -2.0
    got = gini(maps)
    for i in range(5):
        assert float(got[i]) == pytest.approx(_gini_mean_difference(maps[i].numpy()), abs=1e-6)
    assert float(got[1]) == pytest.approx(0.0, abs=1e-6) and float(got[2]) == 0.0
    assert float(got[3]) == pytest.approx(1 - 1 / 36)
    torch.testing.assert_close(gini(7 * maps), got)


@needs_quantus
def test_gini_against_quantus():
    import quantus  # optional (the quantus extra)
    generator = torch.Generator().manual_seed(1)
    maps = torch.rand(4, 1, 8, 8, generator=generator) ** 4
    ref = quantus.Sparseness(abs=True, normalise=False, disable_warnings=True)(
        model=None, x_batch=maps.numpy(), y_batch=np.zeros(4, dtype=int),
        a_batch=maps.numpy().copy())
    np.testing.assert_allclose(gini(maps).numpy(), np.asarray(ref), atol=1e-5)


def test_alignment_margin_is_distance_to_decision_boundary():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 9, generator=generator)
    model = _linear(weight)
    images = torch.rand(6, 1, 3, 3, generator=generator)
    got = alignment_margin(model, images)
    logits = images.flatten(1) @ weight.T
    for i in range(6):
        k, j = logits[i].topk(2).indices.tolist()
        normal = weight[k] - weight[j]
        distance = abs(float(normal @ images[i].flatten())) / float(normal.norm())
        # the boundary point x - t n lies where f_k = f_j
        t = float(normal @ images[i].flatten()) / float(normal @ normal)
        foot = images[i].flatten() - t * normal
        assert float(foot @ weight[k]) == pytest.approx(float(foot @ weight[j]), abs=1e-4)
        assert float(got[i]) == pytest.approx(distance, rel=1e-5)
    torch.testing.assert_close(score("alignment_logit", None, images, model=model),
                               alignment(model, images))
    torch.testing.assert_close(score("alignment", None, images, model=model),
                               alignment(model, images))


def test_alignment_margin_restores_model_state(lenet, batch):
    images, _ = batch
    lenet.train()
    lenet[0].weight.requires_grad_(False)
    alignment_margin(lenet, images)
    assert lenet.training and not lenet[0].weight.requires_grad and lenet[3].weight.requires_grad


def test_score_dispatches_every_metric(lenet, batch):
    images, _ = batch
    images = images[:4]
    attribution = explain(lenet, images, "predicted")
    for kind, info in METRICS.items():
        if kind.startswith("quantus:"):  # tested in test_quantus.py (Quantus is optional)
            continue
        out = score(kind, attribution.maps, images, model=lenet, targets=attribution.target,
                    method="guided_backprop", batch_size=64)
        assert out.shape == (4,) and bool(torch.isfinite(out).all()), kind
        assert bool(((out >= info.low - 1e-6) & (out <= info.high + 1e-6)).all()), kind
    torch.testing.assert_close(cleanliness(attribution.maps, images, "gini"),
                               gini(attribution.maps))


@pytest.mark.parametrize("call, message", [
    (lambda m, x, s, t: score("nope", s, x), "metric must be one of"),
    (lambda m, x, s, t: score("deletion", s, x, targets=t), "needs model="),
    (lambda m, x, s, t: score("deletion", s, x, model=m), "needs targets="),
    (lambda m, x, s, t: score("sensitivity_max", None, x, model=m, targets=t), "needs method="),
    (lambda m, x, s, t: score("gini", None, x), "needs maps="),
    (lambda m, x, s, t: cleanliness(s, x, "insertion", model=m), "needs targets"),
    (lambda m, x, s, t: F.deletion(m, x, s, t.int()), "targets must be an int64"),
    (lambda m, x, s, t: F.deletion(m, x, s, t + 10), r"targets must be classes in \[0, 10\)"),
    (lambda m, x, s, t: F.deletion(m, x, s[:, :, :5], t), "maps must have shape"),
    (lambda m, x, s, t: F.deletion(m, x, s, t, steps=0), "steps must be"),
    (lambda m, x, s, t: F.insertion(m, x, s, t, baseline=2.0), "baseline must be"),
    (lambda m, x, s, t: F.deletion(m, x, s, t, baseline="noise"),
     r"baseline must be a number in \[0, 1\] or 'blur', got 'noise'"),
    (lambda m, x, s, t: F.perturbation_curves(m, x, s, t, "both"), "mode must be"),
    (lambda m, x, s, t: F.infidelity(m, x, s, t, noise_std=-1.0), "noise_std must be"),
    (lambda m, x, s, t: F.infidelity(m, x, s * math.nan, t), "maps must be finite"),
    (lambda m, x, s, t: F.sensitivity_max(m, x, t, "lime"), "method must be one of"),
    (lambda m, x, s, t: F.sensitivity_max(m, x, t, radius=0), "radius must be"),
    (lambda m, x, s, t: gini(s[0]), "maps must be a float tensor"),
])
def test_bad_inputs(lenet, batch, call, message):
    images, _ = batch
    images = images[:2]
    maps = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match=message):
        call(lenet, images, maps, torch.tensor([1, 2]))


def test_faithfulness_restores_model_state(lenet, batch):
    images, _ = batch
    images = images[:2]
    lenet.train()
    lenet[0].weight.requires_grad_(False)
    maps, targets = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    F.deletion(lenet, images, maps, targets)
    F.infidelity(lenet, images, maps, targets)
    F.sensitivity_max(lenet, images, targets, "saliency", n_perturb_samples=2)
    assert all(module.training for module in lenet.modules())
    assert not lenet[0].weight.requires_grad and lenet[3].weight.requires_grad


def test_registered_costs_follow_the_functions_defaults():
    defaults = {name: {k: p.default for k, p in inspect.signature(fn).parameters.items()}
                for name, fn in (("deletion", F.deletion), ("insertion", F.insertion),
                                 ("infidelity", F.infidelity),
                                 ("sensitivity_max", F.sensitivity_max))}
    for name in ("deletion", "insertion"):
        assert METRICS[name].expansion == defaults[name]["steps"] + 1 == F.CURVE_STEPS + 1
        assert not METRICS[name].align_shards and not METRICS[name].random_draws
    for name, draws in (("infidelity", F.INFIDELITY_DRAWS), ("sensitivity_max", F.PERTURB_SAMPLES)):
        assert METRICS[name].expansion == defaults[name]["n_perturb_samples"] == draws
        assert METRICS[name].align_shards and METRICS[name].random_draws
        assert METRICS[name].passes_per_image == draws + 1
    assert METRICS["gini"].family == "cleanliness" and METRICS["gini"].passes_per_image == 0
    assert METRICS["infidelity_unexplained"].passes_per_image == 2 * (F.INFIDELITY_DRAWS + 1)
    assert METRICS["infidelity_unexplained"].signed_map
    assert [m for m in METRICS if not METRICS[m].verdict and not m.startswith("quantus:")] == [
        "deletion", "insertion", "infidelity"]
    for name in ("deletion_gain", "deletion_gain_blur", "lerf_morf"):  # two curves per image
        assert METRICS[name].expansion == F.CURVE_STEPS + 1
        assert METRICS[name].passes_per_image == 2 * (F.CURVE_STEPS + 1)
        assert not METRICS[name].align_shards
    assert METRICS["deletion_gain"].random_draws and not METRICS["lerf_morf"].random_draws
    assert METRICS["deletion_gain_blur"].random_draws


@pytest.mark.parametrize("kind", ["deletion", "insertion", "infidelity", "alignment_margin"])
def test_model_calls_take_the_registered_images_per_call(lenet, batch, kind):
    """Each model call of a metric holds images_per_call(batch_size) images x expansion inputs."""
    images, labels = batch
    images, labels = images[:9], labels[:9]
    maps = explain(lenet, images, "true", "saliency", labels=labels).maps
    sizes = []
    handle = lenet.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    try:
        score(kind, maps, images, model=lenet, targets=labels, batch_size=300)
    finally:
        handle.remove()
    info = METRICS[kind]
    per_call = info.images_per_call(300)
    assert per_call == 300 // info.expansion
    model_calls = [n for n in sizes if n > 1]  # leaves out the one-image class-count probes
    assert max(model_calls) == min(9, per_call) * info.expansion
