"""Faithfulness measured against the same model's own baselines. Pure functions.

A raw faithfulness number mixes the map with how the model reacts to the test itself: a robust
model keeps its prediction longer under any occlusion (deletion), and a confident model's logits
move more under noise (infidelity, in squared logit units). Comparing two models by raw numbers
then compares those reactions. Each score here divides or subtracts the same model's baseline on
the same image, so it can be compared across models:

- :func:`deletion_gain`: deletion AUC of a random pixel order minus the map's order (removed
  pixels black; ``deletion_gain_blur``: set to the blurred image, a removal closer to the data);
- :func:`lerf_morf`: deletion AUC least relevant first minus most relevant first (Bluecher et
  al. 2024);
- :func:`infidelity_unexplained`: Captum's normalized infidelity divided by the mean squared
  change of the logit, i.e. the share of that change the map does not explain (1 - R^2).

Registered in :data:`rvi.metrics.METRICS` after :mod:`rvi.metrics.faithfulness`'s metrics, with
``verdict=True``; see ``docs/metrics.md`` for the numbers that motivate them.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from .._core.checks import check_int, check_maps_like
from .._core.registry import METRIC_REGISTRY, Metric
from .faithfulness import (CURVE_STEPS, INFIDELITY_DRAWS, INFIDELITY_NOISE_STD, deletion,
                           infidelity, per_image_draws)


def deletion_gain(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                  targets: torch.Tensor, *, seed: int = 0, steps: int = CURVE_STEPS,
                  baseline: Union[float, str] = 0.0, batch_size: int = 256,
                  offset: int = 0) -> torch.Tensor:
    """The same model's deletion AUC with the pixels removed in a random order, minus with the
    map's order (most relevant first). **Higher is better**.

    Each image's random order comes from its own generator, seeded by ``(seed, offset + i)``.
    ``baseline``: what a removed pixel becomes (:func:`rvi.metrics.faithfulness.perturbation_curves`:
    0 is black, ``"blur"`` the blurred image's value).

    Shape:
        see :func:`rvi.metrics.faithfulness.perturbation_curves`. Returns (N,) float in [-1, 1].
    """
    check_maps_like(maps, images)
    check_int("offset", offset, 0)
    height, width = images.shape[-2:]
    order = per_image_draws(seed, offset, len(images), 1, (1, height, width), "uniform")
    order = order.to(maps.device)
    kwargs = dict(steps=steps, baseline=baseline, batch_size=batch_size, offset=offset)
    return deletion(model, images, order, targets, **kwargs) - \
        deletion(model, images, maps, targets, **kwargs)


def _score_deletion_gain(maps, images, *, model, targets, seed, batch_size, offset,
                         **_) -> torch.Tensor:
    return deletion_gain(model, images, maps, targets, seed=seed, batch_size=batch_size,
                         offset=offset)


METRIC_REGISTRY.register(Metric(
    "deletion_gain", -1.0, 1.0, True, True, True,
    "deletion AUC of a random pixel order minus of the map's order, same model and image",
    "anything off the data (zeroed pixels), as deletion; one random order per image",
    family="faithfulness", needs_targets=True, function=_score_deletion_gain, uses_sign=True,
    random_draws=True, expansion=CURVE_STEPS + 1, passes_per_image=2 * (CURVE_STEPS + 1)))


def _score_deletion_gain_blur(maps, images, *, model, targets, seed, batch_size, offset,
                              **_) -> torch.Tensor:
    return deletion_gain(model, images, maps, targets, seed=seed, baseline="blur",
                         batch_size=batch_size, offset=offset)


METRIC_REGISTRY.register(Metric(
    "deletion_gain_blur", -1.0, 1.0, True, True, True,
    "deletion_gain with removed pixels set to the blurred image, not to black",
    "faithfulness to detail the blur keeps (the blurred digit's shape stays); one random "
    "order per image", family="faithfulness", needs_targets=True,
    function=_score_deletion_gain_blur, uses_sign=True, random_draws=True,
    expansion=CURVE_STEPS + 1, passes_per_image=2 * (CURVE_STEPS + 1)))


def lerf_morf(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
              *, steps: int = CURVE_STEPS, batch_size: int = 256, offset: int = 0) -> torch.Tensor:
    """Deletion AUC with the least relevant pixels removed first (LeRF) minus with the most
    relevant first (MoRF), as Bluecher et al. (2024) propose against the occlusion confound.
    **Higher is better**. Both curves are the same model's on the same image.

    Shape:
        see :func:`rvi.metrics.faithfulness.perturbation_curves`. Returns (N,) float in [-1, 1].
    """
    check_maps_like(maps, images)
    kwargs = dict(steps=steps, batch_size=batch_size, offset=offset)
    return deletion(model, images, -maps, targets, **kwargs) - \
        deletion(model, images, maps, targets, **kwargs)


def _score_lerf_morf(maps, images, *, model, targets, batch_size, offset, **_) -> torch.Tensor:
    return lerf_morf(model, images, maps, targets, batch_size=batch_size, offset=offset)


METRIC_REGISTRY.register(Metric(
    "lerf_morf", -1.0, 1.0, True, True, True,
    "deletion AUC least relevant first minus most relevant first (Bluecher et al. 2024)",
    "anything off the data (zeroed pixels), as deletion; the order among equal scores",
    family="faithfulness", needs_targets=True, function=_score_lerf_morf, uses_sign=True,
    expansion=CURVE_STEPS + 1, passes_per_image=2 * (CURVE_STEPS + 1)))


def infidelity_unexplained(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                           targets: torch.Tensor, *, noise_std: float = INFIDELITY_NOISE_STD,
                           n_perturb_samples: int = INFIDELITY_DRAWS, seed: int = 0,
                           batch_size: int = 256, offset: int = 0) -> torch.Tensor:
    """Scale-free infidelity: Captum's normalized infidelity divided by ``E_I[Δf^2]``, the mean
    squared change of the target logit under the same perturbations ``I``. **Lower is better**.

    With ``Δf = f_t(x) - f_t(x - I)`` and the least-squares ``beta``, normalized infidelity is
    ``E[(beta <I, s> - Δf)^2] = E[Δf^2] (1 - R^2)``, where ``R^2 = E[<I, s> Δf]^2 /
    (E[<I, s>^2] E[Δf^2])`` is the (uncentred) share of ``E[Δf^2]`` that ``<I, s>`` explains; the
    ratio is ``1 - R^2`` and no longer depends on the logit's scale. An image whose logit never
    changes (``E[Δf^2] = 0``) scores 1 (nothing explained). Perturbations are those of
    :func:`rvi.metrics.faithfulness.infidelity` with the same ``seed`` and ``offset``.

    Shape:
        images: (N, C, H, W) float in [0, 1]; maps: (N, 1 or C, H, W); targets: (N,) int64.
        Returns (N,) float in [0, 1].
    """
    kwargs = dict(noise_std=noise_std, n_perturb_samples=n_perturb_samples, seed=seed,
                  batch_size=batch_size, offset=offset)
    residual = infidelity(model, images, maps, targets, **kwargs)
    change = infidelity(model, images, torch.zeros_like(maps), targets, normalize=False,
                        **kwargs)  # a zero map predicts no change: E[Δf^2]
    ratio = residual.double() / change.double().clamp_min(torch.finfo(torch.float64).tiny)
    # rounding can put the ratio a hair outside [0, 1]; no change to explain scores 1
    ratio = torch.where(change > 0, ratio.clamp(0.0, 1.0), torch.ones_like(ratio))
    return ratio.to(residual.dtype)


def _score_infidelity_unexplained(maps, images, *, model, targets, seed, batch_size, offset,
                                  **_) -> torch.Tensor:
    return infidelity_unexplained(model, images, maps, targets, seed=seed,
                                  batch_size=batch_size, offset=offset)


METRIC_REGISTRY.register(Metric(
    "infidelity_unexplained", 0.0, 1.0, False, True, True,
    "normalized infidelity / E[Δf²] of the target logit: the share the map leaves unexplained",
    "faithfulness to large changes; a linear fit to noise only", family="faithfulness",
    needs_targets=True, function=_score_infidelity_unexplained, uses_sign=True, signed_map=True,
    random_draws=True, expansion=INFIDELITY_DRAWS, passes_per_image=2 * (INFIDELITY_DRAWS + 1),
    align_shards=True))
