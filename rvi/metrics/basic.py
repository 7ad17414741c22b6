"""The cleanliness scores of saliency maps, and :func:`score`, which computes any registered
metric.

Cleanliness scores compare a saliency map ``s`` with its image ``x`` (both flattened per sample),
or measure its sparseness (:func:`gini`), and live here; faithfulness scores (deletion,
insertion, infidelity, sensitivity) live in :mod:`rvi.metrics.faithfulness`. Every score returns
one float per image; every metric is one :class:`MetricInfo` object in :data:`METRICS`
(:mod:`rvi._core.registry`), registered next to its function with its name, range, direction,
needs, family and cost, and :func:`score` computes any of them through that object, so reports
need no special cases. Conventions (see
``docs/metrics.md``):

- Maps may be absolute (non-negative) or signed; images must be finite and non-negative.
- A map of shape (N, 1, H, W) next to an image with C > 1 channels is compared with the image's
  channel mean; otherwise the shapes must match exactly.
- Wherever a score would divide by zero (an all-zero map, an all-zero image, a zero gradient), the
  score is 0.0, never NaN; :func:`zero_maps` says which maps were all zero so that a report can
  state it.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .._core.checks import (check_choice, check_int, check_map, check_map_pair, check_maps_like, check_model,
                            check_scored_image, require_installed)
from .._core.modelstate import channels_last, model_device, preserved_state
from .._core.registry import FAMILIES, METRIC_REGISTRY, Metric  # noqa: F401 (FAMILIES re-exported)

#: Pixels above this value count as the stroke (foreground) in ``foreground_mass``.
FOREGROUND_THRESHOLD = 0.5

#: What a report needs to know about a metric (rvi 0.4's name of :class:`rvi._core.registry.Metric`).
MetricInfo = Metric
#: Every metric by name, in registration order: those of this module, then
#: :mod:`rvi.metrics.faithfulness`'s (a read-only mapping name -> :class:`MetricInfo`).
METRICS = METRIC_REGISTRY


def score(metric: str, maps: Optional[torch.Tensor], images: torch.Tensor, *,
          model: Optional[nn.Module] = None, targets: Optional[torch.Tensor] = None,
          method: Optional[str] = None, seed: int = 0, batch_size: int = 256,
          offset: int = 0) -> torch.Tensor:
    """One score per image for any metric in :data:`METRICS`: checks what the metric needs, then
    calls its ``function``.

    Shape:
        maps: (N, 1 or C, H, W) float (None where ``uses_map`` is False or ``needs_method``);
        images: (N, C, H, W) float in [0, 1]; targets: (N,) int64. Returns (N,) float.

    Args:
        metric: a key of :data:`METRICS`.
        maps: the saliency maps scored.
        images: the images they explain.
        model: the classifier (``needs_model``).
        targets: the class each map explains (``needs_targets``).
        method: a key of :data:`rvi.attribution.saliency.METHODS` (``needs_method``).
        seed: seeds the random perturbations of ``infidelity`` and ``sensitivity_max``.
        batch_size: the most inputs the model sees in one pass.
        offset: index of ``images[0]`` in a larger set scored in parts (a rank's shard): the
            random perturbations of image ``i`` are those of image ``offset + i``, and batched
            faithfulness metrics cut their model calls as one call on the whole set would.

    Raises:
        ValueError: unknown ``metric``, a missing model/targets/method/maps, or bad inputs.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    info = METRICS[metric]
    if info.needs_model and model is None:
        raise ValueError(f"metric {metric!r} needs model=, got None")
    if info.needs_targets and targets is None:
        raise ValueError(f"metric {metric!r} needs targets=(N,) int64 classes, got None")
    if info.needs_method and method is None:
        raise ValueError(f"metric {metric!r} needs method= (a saliency method's name), got None")
    if info.uses_map and not info.needs_method and maps is None:
        raise ValueError(f"metric {metric!r} needs maps=(N, 1 or C, H, W), got None")
    return info.function(maps, images, model=model, targets=targets, method=method, seed=seed,
                         batch_size=batch_size, offset=offset)


def check_installed(metrics) -> None:
    """Raise :class:`~rvi.errors.MissingPackageError` for the first of ``metrics`` (registered
    names) whose optional package (:attr:`~rvi._core.registry.Metric.requires`) is not installed: a
    run checks this before its first attack, not when it reaches the metric."""
    for name in metrics:
        needed = METRIC_REGISTRY[name].requires
        if needed is not None:
            require_installed(needed[0], needed[1], f"metric {name!r} and the other "
                                                    f"{needed[0]} metrics")


def metric_images_per_call(metric: str, batch_size: int) -> int:
    """Images per model call of ``metric`` that the shards of a sharded run must be cut at:
    ``METRICS[metric].images_per_call(batch_size)`` where ``align_shards`` (infidelity and
    sensitivity_max: ``max(1, batch_size // PERTURB_SAMPLES)``), else ``batch_size``, which
    adds no constraint beyond the batches themselves. Deletion/insertion (``batch_size // 21``
    images a call) are left out on purpose: aligning to them would make shards far coarser, and
    their only effect is float rounding.

    Raises:
        ValueError: unknown ``metric`` or a ``batch_size`` below 1.
    """
    check_choice("metric", metric, METRICS.names())
    check_int("batch_size", batch_size, 1)
    info = METRICS[metric]
    return info.images_per_call(batch_size) if info.align_shards else batch_size


def cleanliness(saliency: Optional[torch.Tensor], image: torch.Tensor, kind: str = "cosine", *,
                model: Optional[nn.Module] = None) -> torch.Tensor:
    """One cleanliness score per image (the seed's entry point; :func:`score` is the general one).

    Shape:
        saliency: (N, 1, H, W) or (N, C, H, W) float, finite; image: (N, C, H, W) float,
        finite, >= 0. Returns (N,) float on the image's device.

    Args:
        saliency: the maps (may be None for ``alignment``, which ignores them).
        image: the images the maps are compared with.
        kind: a key of :data:`METRICS` that needs no targets (use :func:`score` for the others).
        model: the classifier, required when ``METRICS[kind].needs_model``.

    Returns:
        The scores; 0.0 where a denominator is zero (all-zero map, image or gradient).

    Raises:
        ValueError: unknown ``kind``, a kind that needs targets, a missing model, mismatched
            shapes, a negative image, or NaN/inf values.
    """
    if kind in METRICS and METRICS[kind].needs_targets:
        raise ValueError(f"kind {kind!r} needs targets; call rvi.metrics.score(kind, maps, "
                         f"images, model=..., targets=...)")
    return score(kind, saliency, image, model=model)


def inner(saliency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``<s, x>`` per image (the seed study's score).

    Shape:
        saliency, image: see :func:`cleanliness`. Returns (N,).
    """
    s, x = check_map_pair(saliency, image)
    return (s * x).flatten(1).sum(1)


def _score_inner(maps, images, **_) -> torch.Tensor:
    return inner(maps, images)  # inner checks the pair


METRIC_REGISTRY.register(Metric(
    "inner", 0.0, math.inf, True, False, True,
    "<s, x>: the seed study's score; scales with the map's magnitude",
    "anything independent of the gradient's scale; whether the map reflects the model",
    function=_score_inner, uses_sign=True))


def cosine(saliency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``<s, x> / (||s|| ||x||)`` per image; 0.0 when the map or the image is all zero.

    Shape:
        saliency, image: see :func:`cleanliness`. Returns (N,), in [0, 1] for non-negative maps.
    """
    s, x = check_map_pair(saliency, image)
    s, x = s.flatten(1), x.flatten(1)
    return _ratio_or_zero((s * x).sum(1), s.norm(dim=1) * x.norm(dim=1))


def _ratio_or_zero(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` per image, 0.0 where the (non-negative) denominator is 0."""
    tiny = torch.finfo(denominator.dtype).tiny
    return torch.where(denominator > 0, numerator / denominator.clamp_min(tiny),
                       torch.zeros_like(numerator))


def _score_cosine(maps, images, **_) -> torch.Tensor:
    return cosine(maps, images)  # cosine checks the pair


METRIC_REGISTRY.register(Metric(
    "cosine", 0.0, 1.0, True, False, True,
    "<s, x> / (||s|| ||x||): scale-free similarity of map and image",
    "whether the map reflects the model (the image itself scores 1)",
    function=_score_cosine, uses_sign=True))


def foreground_mass(saliency: torch.Tensor, image: torch.Tensor,
                    threshold: float = FOREGROUND_THRESHOLD) -> torch.Tensor:
    """Share of the map's mass ``sum |s|`` on stroke pixels (``x > threshold``); 0.0 for an
    all-zero map.

    Shape:
        saliency, image: see :func:`cleanliness`. Returns (N,) in [0, 1].
    """
    s, x = check_map_pair(saliency, image)
    mass = s.abs().flatten(1)
    return _ratio_or_zero((mass * (x.flatten(1) > threshold)).sum(1), mass.sum(1))


def _score_foreground_mass(maps, images, **_) -> torch.Tensor:
    return foreground_mass(maps, images)  # it checks the pair


METRIC_REGISTRY.register(Metric(
    "foreground_mass", 0.0, 1.0, True, False, True,
    f"share of |s| on stroke pixels (x > {FOREGROUND_THRESHOLD:g})",
    "where on the stroke the mass lies; whether the map reflects the model",
    function=_score_foreground_mass))


def alignment(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Etmann et al. (2019)'s alignment ``|<x, g>| / ||g||`` per image, with ``g`` the signed
    gradient of the predicted class's logit with respect to ``x`` (model in eval mode; mode and
    ``requires_grad`` flags restored afterwards). 0.0 where ``g`` is zero. Registered as
    ``alignment_logit`` (and ``alignment``, the seed's name).

    For a linear model ``f(x) = W x`` this is the distance from ``x`` to the hyperplane
    ``<w_k, x> = 0`` of the predicted class ``k`` (not the decision boundary; see
    :func:`alignment_margin`).

    Shape:
        images: (N, C, H, W) float, finite, >= 0. Returns (N,) on the images' device.

    Raises:
        ValueError: bad images, batch size, or a model output that is not (N, K).
    """
    return _alignment(model, images, batch_size, margin=False)


#: The seed's function under the name of what it measures.
alignment_logit = alignment


def _score_alignment(maps, images, *, model, batch_size, **_) -> torch.Tensor:
    if maps is not None:
        check_map_pair(maps, images)
    return alignment(model, images, batch_size=batch_size)


_ALIGNMENT_LOGIT = dict(
    low=0.0, high=math.inf, higher_is_better=True, needs_model=True, uses_map=False,
    description="|<x, g>| / ||g||, g = gradient of the predicted logit (Etmann et al. 2019)",
    cannot_show="any attribution method's quality; the boundary distance only for linear models "
                "with zero bias (it uses the logit, not the margin)",
    function=_score_alignment, expansion=1, passes_per_image=1)
METRIC_REGISTRY.register(Metric("alignment_logit", **_ALIGNMENT_LOGIT))
# the seed's name, kept so that configs and saved records that say "alignment" still work
METRIC_REGISTRY.register(Metric("alignment", **_ALIGNMENT_LOGIT))


def alignment_margin(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256
                     ) -> torch.Tensor:
    """Alignment with the margin's gradient: ``|<x, g>| / ||g||`` with
    ``g = grad_x (f_k - max_{j != k} f_j)``, ``k`` the predicted class and the runner-up ``j``
    chosen at ``x``. 0.0 where ``g`` is zero.

    For a linear model ``f(x) = W x`` (zero bias) this is exactly the distance from ``x`` to the
    decision boundary ``f_k = f_j`` between the predicted class and the runner-up; with a bias
    ``b`` the distance is ``|<x, g> + b_k - b_j| / ||g||`` instead.

    Shape:
        images: (N, C, H, W) float, finite, >= 0. Returns (N,) on the images' device.

    Raises:
        ValueError: bad images, batch size, or a model output that is not (N, K) with K >= 2.
    """
    return _alignment(model, images, batch_size, margin=True)


def _score_alignment_margin(maps, images, *, model, batch_size, **_) -> torch.Tensor:
    if maps is not None:
        check_map_pair(maps, images)
    return alignment_margin(model, images, batch_size=batch_size)


METRIC_REGISTRY.register(Metric(
    "alignment_margin", 0.0, math.inf, True, True, False,
    "|<x, g>| / ||g||, g = gradient of f_k - max_{j!=k} f_j (k predicted): the margin form",
    "any attribution method's quality; the boundary distance exactly only for a linear "
    "model with zero bias", function=_score_alignment_margin, expansion=1, passes_per_image=1))


def _alignment(model: nn.Module, images: torch.Tensor, batch_size: int, margin: bool
               ) -> torch.Tensor:
    check_model(model)
    x = check_scored_image(images, "images")
    check_int("batch_size", batch_size, 1)
    device = model_device(model)
    scores = []
    with preserved_state(model), channels_last(model), torch.enable_grad():
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].detach().to(device).requires_grad_(True)
            logits = model(batch)
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2 \
                    or (margin and logits.shape[1] < 2):
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) \
                    else type(logits).__name__
                raise ValueError(f"model must return (N, K) logits{' with K >= 2' if margin else ''}"
                                 f", got {got}")
            top = logits.topk(2, dim=1).indices if margin else logits.argmax(1, keepdim=True)
            picked = logits.gather(1, top[:, :1])
            if margin:
                picked = picked - logits.gather(1, top[:, 1:2])
            (grad,) = torch.autograd.grad(picked.sum(), batch)
            g, flat = grad.flatten(1), batch.detach().flatten(1)
            scores.append(_ratio_or_zero((flat * g).sum(1).abs(), g.norm(dim=1)).to(images.device))
    return torch.cat(scores)


def zero_maps(saliency: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which maps are exactly zero everywhere."""
    check_map(saliency)
    return ~saliency.flatten(1).ne(0).any(1)


# gini (sparseness, a cleanliness score) is registered last: it keeps its place in the registry
# (and the tables' column order) from when it lived in rvi.metrics.faithfulness.
def gini(maps: torch.Tensor) -> torch.Tensor:
    """Gini index of ``|s|`` per map (sparseness; Chalasani et al. 2020). **Higher = sparser**.

    ``G = sum_k (2k - n - 1) a_(k) / (n sum_k a_(k))`` with ``a_(1) <= ... <= a_(n)`` the sorted
    ``|s|`` over all n entries: 0 for a uniform map, ``1 - 1/n`` for a map with one non-zero
    entry; 0.0 for an all-zero map.

    Shape:
        maps: (N, C, H, W) float, finite. Returns (N,) in [0, 1 - 1/n].
    """
    check_maps_like(maps)
    a = maps.detach().abs().flatten(1).double().sort(dim=1).values
    n = a.shape[1]
    k = torch.arange(1, n + 1, dtype=torch.float64, device=a.device)
    total = a.sum(1)
    g = ((2 * k - n - 1) * a).sum(1) / (n * total.clamp_min(torch.finfo(torch.float64).tiny))
    return torch.where(total > 0, g, torch.zeros_like(g)).to(maps.dtype)


def _score_gini(maps, images, **_) -> torch.Tensor:
    return gini(check_map_pair(maps, images)[0])


METRIC_REGISTRY.register(Metric(
    "gini", 0.0, 1.0, True, False, True,
    "Gini index of |s| (sparseness; Chalasani et al. 2020)",
    "where the mass lies or whether it reflects the model (one bright pixel is maximal)",
    function=_score_gini))
