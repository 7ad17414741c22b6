"""Faithfulness of saliency maps: does the map reflect what the model uses?

Each function returns one float per image, (N,), on the images' device:

- :func:`deletion` / :func:`insertion`: area under the target-class probability curve as the
  pixels are removed from (inserted into) the image in the map's order (Petsiuk et al. 2018).
  Computed here, batched: all steps of several images go through the model in one pass.
- :func:`infidelity`: Captum's ``captum.metrics.infidelity`` (``normalize=True``) with a seeded
  Gaussian perturbation (Yeh et al. 2019).
- :func:`sensitivity_max`: Captum's ``captum.metrics.sensitivity_max``, which recomputes the map
  (:func:`rvi.attribution.saliency.explain`) on seeded, slightly perturbed copies of each image.
- model-relative scores (deletion gain, LeRF - MoRF, unexplained infidelity) are in
  :mod:`rvi.metrics.relative`, which compares each map with the same model's baselines.

Each score is registered in :data:`rvi.metrics.METRICS` (:mod:`rvi._core.registry`) next to its
function, after the metrics of :mod:`rvi.metrics.basic`. The scores are
functions of their inputs; a scoring pass may answer a repeated call from :mod:`rvi._core.reuse`.

Random draws come from one generator per image, seeded from ``(seed, image index)``, so results
do not depend on ``batch_size`` and the caller's RNG stream is never touched. The model is put in
``eval()`` and its parameters stop requiring gradients during a call; both are restored.
See ``docs/metrics.md`` for formulas, directions and what each score cannot show.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from .._core.checks import (check_choice, check_images, check_int, check_logits, check_maps_like,
                            check_positive, check_targets, chunks)
from .._core.modelstate import channels_last, model_device, preserved_state
from .._core.registry import METRIC_REGISTRY, Metric
from .._core.reuse import reused
from ..attribution import METHOD_REGISTRY
from ..attribution.saliency import explain

#: Default number of equal steps of the deletion/insertion curves (5% of the pixels each).
CURVE_STEPS = 20
#: Std of infidelity's Gaussian perturbation, in units of the [0, 1] pixel range.
INFIDELITY_NOISE_STD = 0.1
#: Radius of sensitivity_max's uniform L-inf perturbation (Captum's default).
SENSITIVITY_RADIUS = 0.02
#: Perturbed copies per image for sensitivity_max (Captum's default; each copy is explained again).
PERTURB_SAMPLES = 10
#: Noise draws per image for infidelity and infidelity_unexplained. 1 - R² is fitted on each
#: image's draws, so few draws read low: on rvi bench's mnist-5k LeNets (200 images, against
#: 1,000 draws; benchmarks/results/infidelity_draws.md) the bias is -0.032 / -0.079 (natural /
#: robust) at Captum's default 10 draws, -0.002 / -0.008 at 100, with a spread over noise seeds of
#: 0.003; the robust - natural difference the tables report is about +0.24. Each draw is one
#: forward pass.
INFIDELITY_DRAWS = 100
#: The ``baseline="blur"`` removal: each removed pixel takes the value of the image blurred by a
#: Gaussian of std ``BLUR_SIGMA_FRACTION * max(H, W)`` (4.7 pixels on 28x28; Fong and Vedaldi
#: 2017 blur 224-pixel images with std 10): the removal stays closer to the data than black.
BLUR_SIGMA_FRACTION = 1 / 6


def blurred(images: torch.Tensor) -> torch.Tensor:
    """``images`` blurred as ``baseline="blur"`` removes pixels: a Gaussian of std
    ``BLUR_SIGMA_FRACTION * max(H, W)``, kernel ``2 ceil(2 std) + 1`` clipped to an odd size
    below the image's, reflected at the borders (``torchvision``'s ``gaussian_blur``).

    Shape:
        images: (N, C, H, W) float in [0, 1]. Returns the same shape, in [0, 1].
    """
    height, width = images.shape[-2:]
    sigma = BLUR_SIGMA_FRACTION * max(height, width)
    sizes = [min(2 * math.ceil(2 * sigma) + 1, side - 1 if side % 2 == 0 else side)
             for side in (width, height)]
    return gaussian_blur(images, kernel_size=sizes, sigma=[sigma, sigma])


def perturbation_curves(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                        targets: torch.Tensor, mode: str = "deletion", *, steps: int = CURVE_STEPS,
                        baseline: Union[float, str] = 0.0, batch_size: int = 256,
                        offset: int = 0) -> tuple:
    """Deletion or insertion curves: target-class softmax probability against the fraction of
    pixels changed, most relevant pixels first.

    A pixel's relevance is the map summed over its channels; all channels of a pixel change
    together. Pixels are ranked by relevance, highest first; **ties keep row-major order** (the
    lower flat index ``h * W + w`` goes first; a stable sort). After step ``k`` of ``steps`` the
    first ``n_k = floor(k * H * W / steps)`` ranked pixels are changed: set to ``baseline``
    (deletion) or, starting from an all-``baseline`` image, set to the image's values (insertion).
    ``baseline`` is a value in [0, 1] or ``"blur"``: the pixel's value in :func:`blurred`.

    Shape:
        images: (N, C, H, W) float in [0, 1]; maps: (N, 1, H, W) or (N, C, H, W) finite float;
        targets: (N,) int64. Returns ``(fractions, probs)``: (steps + 1,) float64 fractions
        ``n_k / (H W)`` from 0 to 1 (CPU), and (N, steps + 1) float probabilities in [0, 1].

    ``offset``: index of ``images[0]`` in a larger set scored in parts (a rank's shard); model
    calls take the images of one call on the whole set (the first may take fewer).

    Raises:
        ValueError: bad images, maps, targets, mode, steps, baseline or batch size.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    check_images(images)
    check_maps_like(maps, images)
    check_int("steps", steps, 1)
    check_int("batch_size", batch_size, 1)
    check_int("offset", offset, 0)
    if baseline != "blur" and (isinstance(baseline, bool) or not isinstance(baseline, (int, float))
                               or not 0.0 <= baseline <= 1.0):
        raise ValueError(f"baseline must be a number in [0, 1] or 'blur', got {baseline!r}")
    n, _, height, width = images.shape
    pixels = height * width
    relevance = maps.detach().sum(1).flatten(1)
    order = torch.sort(relevance, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=order.device).expand(n, pixels))
    counts = torch.arange(steps + 1) * pixels // steps
    fractions = counts.double() / pixels
    device = model_device(model)
    counts = counts.to(device)
    per_call = max(1, batch_size // (steps + 1))
    probs = []
    with preserved_state(model), channels_last(model), torch.no_grad():
        model.eval()
        num_classes = None
        for part in chunks(n, per_call, offset):
            x = images[part].detach().to(device)
            m, c = x.shape[:2]
            changed = (rank[part].to(device)[:, None, :] < counts[None, :, None])[:, :, None, :]
            flat = x.flatten(2)[:, None]
            base = (blurred(x).flatten(2)[:, None] if baseline == "blur"
                    else torch.full_like(flat, float(baseline)))
            batch = torch.where(changed, base, flat) if mode == "deletion" \
                else torch.where(changed, flat, base)
            logits = model(batch.reshape(m * (steps + 1), c, height, width))
            num_classes = check_logits(logits, m * (steps + 1))
            if part.start == 0:
                check_targets(targets, n, num_classes)
            target = targets[part].to(device).repeat_interleave(steps + 1)
            picked = logits.softmax(1).gather(1, target[:, None])
            probs.append(picked.reshape(m, steps + 1).to(images.device))
    return fractions, torch.cat(probs)


def deletion(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
             *, steps: int = CURVE_STEPS, baseline: Union[float, str] = 0.0, batch_size: int = 256,
             offset: int = 0) -> torch.Tensor:
    """Deletion AUC (Petsiuk et al. 2018): area under the target-class probability as the most
    relevant pixels are set to ``baseline`` (0, black), trapezoid rule over the fraction removed
    in [0, 1]. **Lower is better** (a faithful map removes the evidence first).

    Shape:
        see :func:`perturbation_curves`. Returns (N,) float in [0, 1].
    """
    return _auc(model, images, maps, targets, "deletion", steps, baseline, batch_size, offset)


def _score_deletion(maps, images, *, model, targets, batch_size, offset, **_) -> torch.Tensor:
    return deletion(model, images, maps, targets, batch_size=batch_size, offset=offset)


METRIC_REGISTRY.register(Metric(
    "deletion", 0.0, 1.0, False, True, True,
    "AUC of the target probability as top-ranked pixels are set to 0 (Petsiuk et al. 2018)",
    "anything off the data: zeroed images are out of distribution, and the order of pixels "
    "of equal rank is arbitrary", family="faithfulness", needs_targets=True,
    function=_score_deletion, uses_sign=True, verdict=False, expansion=CURVE_STEPS + 1,
    passes_per_image=CURVE_STEPS + 1))


def insertion(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
              *, steps: int = CURVE_STEPS, baseline: Union[float, str] = 0.0, batch_size: int = 256,
              offset: int = 0) -> torch.Tensor:
    """Insertion AUC (Petsiuk et al. 2018): area under the target-class probability as the most
    relevant pixels are copied into an all-``baseline`` image, trapezoid rule over the fraction
    inserted in [0, 1]. **Higher is better**.

    Shape:
        see :func:`perturbation_curves`. Returns (N,) float in [0, 1].
    """
    return _auc(model, images, maps, targets, "insertion", steps, baseline, batch_size, offset)


def _score_insertion(maps, images, *, model, targets, batch_size, offset, **_) -> torch.Tensor:
    return insertion(model, images, maps, targets, batch_size=batch_size, offset=offset)


METRIC_REGISTRY.register(Metric(
    "insertion", 0.0, 1.0, True, True, True,
    "AUC of the target probability as top-ranked pixels are inserted into a black image",
    "anything off the data: partly inserted images are out of distribution",
    family="faithfulness", needs_targets=True, function=_score_insertion, uses_sign=True,
    verdict=False, expansion=CURVE_STEPS + 1, passes_per_image=CURVE_STEPS + 1))


@reused
def _auc(model, images, maps, targets, mode: str, steps: int, baseline,
         batch_size: int, offset: int = 0) -> torch.Tensor:
    """Trapezoid area under :func:`perturbation_curves` over the fraction changed in [0, 1]."""
    fractions, probs = perturbation_curves(model, images, maps, targets, mode, steps=steps,
                                           baseline=baseline, batch_size=batch_size,
                                           offset=offset)
    return torch.trapezoid(probs, fractions.to(probs), dim=1)


@reused
def infidelity(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
               *, noise_std: float = INFIDELITY_NOISE_STD, n_perturb_samples: int = INFIDELITY_DRAWS,
               seed: int = 0, batch_size: int = 256, offset: int = 0,
               normalize: bool = True) -> torch.Tensor:
    """Captum's normalized explanation infidelity (Yeh et al. 2019) of the target logit.

    ``E_I[(beta <I, s> - (f_t(x) - f_t(x - I)))^2]`` with ``I ~ N(0, noise_std^2)`` per pixel,
    ``f_t`` the target class's **logit**, and ``beta`` the least-squares scale Captum applies with
    ``normalize=True`` (so the score does not change when the map is scaled; ``normalize=False``
    keeps ``beta = 1``). **Lower is better**.
    A (N, 1, H, W) map next to C-channel images is repeated over the channels. Perturbed images
    are not clipped to [0, 1].

    Shape:
        images: (N, C, H, W) float in [0, 1]; maps: (N, 1 or C, H, W); targets: (N,) int64.
        Returns (N,) float >= 0.

    ``offset`` is the index of ``images[0]`` in a larger set scored in parts (a rank's shard):
    image ``i`` draws the perturbations of image ``offset + i``, and model calls take the images
    of one call on the whole set (the first may take fewer).
    """
    check_images(images)
    check_maps_like(maps, images)
    check_positive("noise_std", noise_std)
    check_int("n_perturb_samples", n_perturb_samples, 1)
    check_int("seed", seed, 0)
    check_int("batch_size", batch_size, 1)
    check_int("offset", offset, 0)
    device = model_device(model)
    maps = maps.expand_as(images) if maps.shape[1] != images.shape[1] else maps
    per_call = max(1, batch_size // n_perturb_samples)
    out = []
    with preserved_state(model), channels_last(model):
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        check_targets(targets, len(images), num_classes_of(model, images[:1].to(device)))
        for part in chunks(len(images), per_call, offset):
            x = images[part].detach().to(device)
            perturb = _gaussian_perturbation(seed, offset + part.start, len(x),
                                             n_perturb_samples, noise_std)
            scores = captum_infidelity(model, perturb, x, maps[part].detach().to(x),
                                       target=targets[part].to(device),
                                       n_perturb_samples=n_perturb_samples, normalize=normalize)
            out.append(scores.to(images.device))
    return torch.cat(out)


def _score_infidelity(maps, images, *, model, targets, seed, batch_size, offset, **_
                      ) -> torch.Tensor:
    return infidelity(model, images, maps, targets, seed=seed, batch_size=batch_size,
                      offset=offset)


# Captum evaluates the originals once and the INFIDELITY_DRAWS perturbed copies per image.
METRIC_REGISTRY.register(Metric(
    "infidelity", 0.0, math.inf, False, True, True,
    "Captum infidelity (normalized) of the target logit under Gaussian noise (Yeh et al. 2019)",
    "faithfulness to large changes; the sign is lost when maps are absolute",
    family="faithfulness", needs_targets=True, function=_score_infidelity, uses_sign=True,
    verdict=False,
    random_draws=True, expansion=INFIDELITY_DRAWS, passes_per_image=INFIDELITY_DRAWS + 1,
    align_shards=True))


def sensitivity_max(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                    method: str = "guided_backprop", *, radius: float = SENSITIVITY_RADIUS,
                    n_perturb_samples: int = PERTURB_SAMPLES, absolute: bool = True, seed: int = 0,
                    batch_size: int = 256, offset: int = 0) -> torch.Tensor:
    """Captum's max-sensitivity (Yeh et al. 2019) of ``method``'s maps.

    ``max_j ||s(x + d_j) - s(x)||_F / ||s(x)||_F`` over ``n_perturb_samples`` draws ``d_j``
    uniform in the L-inf ball of ``radius``, with ``x + d_j`` clipped to [0, 1] (rvi's maps are
    defined on [0, 1] images). Maps come from :func:`rvi.attribution.saliency.explain` with ``method``,
    ``absolute`` and the target class (an all-zero original map divides by 1, as in Captum).
    **Lower is better** (a stable explanation).

    Shape:
        images: (N, C, H, W) float in [0, 1]; targets: (N,) int64. Returns (N,) float >= 0.

    ``offset``: as in :func:`infidelity`.
    """
    check_images(images)
    check_choice("method", method, METHOD_REGISTRY.names())
    check_positive("radius", radius)
    check_int("n_perturb_samples", n_perturb_samples, 1)
    check_int("seed", seed, 0)
    check_int("batch_size", batch_size, 1)
    check_int("offset", offset, 0)
    device = model_device(model)
    with preserved_state(model):
        model.eval()
        check_targets(targets, len(images), num_classes_of(model, images[:1].to(device)))

    per_call = max(1, batch_size // n_perturb_samples)
    out = []
    for part in chunks(len(images), per_call, offset):
        x = images[part].detach().to(device)
        explanation = _explanation(model, targets[part].to(device), method, absolute, seed,
                                   batch_size)
        perturb = _uniform_perturbation(seed, offset + part.start, len(x), n_perturb_samples,
                                        radius)
        scores = captum_sensitivity_max(explanation, x, perturb_func=perturb,
                                        n_perturb_samples=n_perturb_samples)
        out.append(scores.to(images.device))
    return torch.cat(out)


def _score_sensitivity_max(maps, images, *, model, targets, method, seed, batch_size, offset,
                           **_) -> torch.Tensor:
    return sensitivity_max(model, images, targets, method, seed=seed, batch_size=batch_size,
                           offset=offset)


# maps of the originals and of PERTURB_SAMPLES perturbed copies per image (each a method's cost)
METRIC_REGISTRY.register(Metric(
    "sensitivity_max", 0.0, math.inf, False, True, True,
    "Captum max-sensitivity: largest relative change of the method's map under small noise",
    "whether the map is right: a constant map is perfectly stable",
    family="faithfulness", needs_targets=True, needs_method=True,
    function=_score_sensitivity_max, random_draws=True, expansion=PERTURB_SAMPLES,
    passes_per_image=PERTURB_SAMPLES + 1, align_shards=True))


# --- helpers ----------------------------------------------------------------------------------

def per_image_draws(seed: int, start: int, count: int, samples: int, shape,
                    kind: str) -> torch.Tensor:
    """(count * samples, *shape) float32 draws on CPU; image ``start + i`` gets its own
    generator seeded from ``(seed, start + i)``, so draws do not depend on batching."""
    out = []
    for index in range(start, start + count):
        state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
        gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        size = (samples, *shape)
        out.append(torch.randn(size, generator=gen) if kind == "normal"
                   else torch.rand(size, generator=gen))
    return torch.cat(out)


def _explanation(model: nn.Module, targets: torch.Tensor, method: str, absolute: bool, seed: int,
                 batch_size: int):
    """Captum sensitivity ``explanation_func`` for one chunk of images: ``explain``'s maps, as a
    1-tuple (Captum iterates over it). Captum hands over the chunk itself first, then each image's
    perturbed copies consecutively; the targets are repeated to match (Captum's own expansion
    of ``target=`` skips a one-element tensor)."""
    def explanation(inputs):
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        target = targets.repeat_interleave(len(x) // len(targets))
        return (explain(model, x, target, method, absolute=absolute, batch_size=batch_size,
                        seed=seed).maps,)
    return explanation


def _gaussian_perturbation(seed: int, start: int, count: int, samples: int, std: float):
    """Captum infidelity ``perturb_func``: (perturbation I, inputs - I), I ~ N(0, std^2)."""
    def perturb(inputs):
        noise = per_image_draws(seed, start, count, samples, inputs.shape[1:], "normal")
        noise = noise.to(inputs) * std
        return noise, inputs - noise
    return perturb


def _uniform_perturbation(seed: int, start: int, count: int, samples: int, radius: float):
    """Captum sensitivity ``perturb_func`` (one parameter, so Captum passes no radius): inputs
    plus uniform noise in [-radius, radius], clipped to [0, 1]."""
    def perturb(inputs):
        draw = per_image_draws(seed, start, count, samples, inputs.shape[1:], "uniform").to(inputs)
        return (inputs + (2 * draw - 1) * radius).clamp(0.0, 1.0)
    return perturb


@torch.no_grad()
def num_classes_of(model: nn.Module, example: torch.Tensor) -> int:
    return check_logits(model(example), len(example))
