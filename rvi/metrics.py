"""Cleanliness scores of saliency maps, and accuracy: pure functions on tensors.

Each score compares a saliency map ``s`` with its image ``x`` (both flattened per sample) and
returns one float per image. Every metric's name, range, direction and needs are data in
:data:`METRICS`, so reports need no special cases. Conventions (see ``docs/metrics.md``):

- Maps may be absolute (non-negative) or signed; images must be finite and non-negative.
- A map of shape (N, 1, H, W) next to an image with C > 1 channels is compared with the image's
  channel mean; otherwise the shapes must match exactly.
- Wherever a score would divide by zero (an all-zero map, an all-zero image, a zero gradient), the
  score is 0.0, never NaN; :func:`count_zero_maps` says how many maps were all zero so that a
  report can state it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ._checks import check_int, check_model
from ._modelstate import model_device, preserved_state

#: Pixels above this value count as the stroke (foreground) in ``foreground_mass``.
FOREGROUND_THRESHOLD = 0.5


@dataclass(frozen=True)
class MetricInfo:
    """What a report needs to know about a metric.

    Attributes:
        name: the ``kind`` passed to :func:`cleanliness`.
        low, high: the range of the score for non-negative maps (``math.inf`` if unbounded).
        higher_is_better: whether a higher score means a cleaner map.
        needs_model: the score needs the model (pass ``model=``).
        uses_map: the score depends on the saliency map (``alignment`` scores the model's own
            gradient and ignores the map, so map-only controls do not apply to it).
        description: one line for tables and help text.
    """

    name: str
    low: float
    high: float
    higher_is_better: bool
    needs_model: bool
    uses_map: bool
    description: str


METRICS = {
    "inner": MetricInfo(
        "inner", 0.0, math.inf, True, False, True,
        "<s, x>: the seed study's score; scales with the map's magnitude"),
    "cosine": MetricInfo(
        "cosine", 0.0, 1.0, True, False, True,
        "<s, x> / (||s|| ||x||): scale-free similarity of map and image"),
    "foreground_mass": MetricInfo(
        "foreground_mass", 0.0, 1.0, True, False, True,
        f"share of |s| on stroke pixels (x > {FOREGROUND_THRESHOLD:g})"),
    "alignment": MetricInfo(
        "alignment", 0.0, math.inf, True, True, False,
        "|<x, g>| / ||g||, g = gradient of the predicted logit (Etmann et al. 2019)"),
}


def cleanliness(saliency: Optional[torch.Tensor], image: torch.Tensor, kind: str = "cosine", *,
                model: Optional[nn.Module] = None) -> torch.Tensor:
    """One cleanliness score per image.

    Shape:
        saliency: (N, 1, H, W) or (N, C, H, W) float, finite; image: (N, C, H, W) float,
        finite, >= 0. Returns (N,) float on the image's device.

    Args:
        saliency: the maps (may be None for ``alignment``, which ignores them).
        image: the images the maps are compared with.
        kind: a key of :data:`METRICS`.
        model: the classifier, required when ``METRICS[kind].needs_model``.

    Returns:
        The scores; 0.0 where a denominator is zero (all-zero map, image or gradient).

    Raises:
        ValueError: unknown ``kind``, a missing model, mismatched shapes, a negative image, or
            NaN/inf values.
    """
    if kind not in METRICS:
        raise ValueError(f"kind must be one of {', '.join(METRICS)}; got {kind!r}")
    info = METRICS[kind]
    if info.needs_model and model is None:
        raise ValueError(f"kind {kind!r} needs model=, got None")
    if kind == "alignment":
        if saliency is not None:
            _check_pair(saliency, image)
        return alignment(model, image)
    s, x = _check_pair(saliency, image)
    if kind == "inner":
        return inner(s, x)
    if kind == "cosine":
        return cosine(s, x)
    return foreground_mass(s, x)


def inner(saliency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``<s, x>`` per image (the seed study's score).

    Shape:
        saliency, image: see :func:`cleanliness`. Returns (N,).
    """
    s, x = _check_pair(saliency, image)
    return (s * x).flatten(1).sum(1)


def cosine(saliency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``<s, x> / (||s|| ||x||)`` per image; 0.0 when the map or the image is all zero.

    Shape:
        saliency, image: see :func:`cleanliness`. Returns (N,), in [0, 1] for non-negative maps.
    """
    s, x = _check_pair(saliency, image)
    s, x = s.flatten(1), x.flatten(1)
    norms = s.norm(dim=1) * x.norm(dim=1)
    dot = (s * x).sum(1)
    return torch.where(norms > 0, dot / norms.clamp_min(torch.finfo(norms.dtype).tiny),
                       torch.zeros_like(dot))


def foreground_mass(saliency: torch.Tensor, image: torch.Tensor,
                    threshold: float = FOREGROUND_THRESHOLD) -> torch.Tensor:
    """Share of the map's mass ``sum |s|`` on stroke pixels (``x > threshold``); 0.0 for an
    all-zero map.

    Shape:
        saliency, image: see :func:`cleanliness`. Returns (N,) in [0, 1].
    """
    s, x = _check_pair(saliency, image)
    mass = s.abs().flatten(1)
    total = mass.sum(1)
    on_stroke = (mass * (x.flatten(1) > threshold)).sum(1)
    return torch.where(total > 0, on_stroke / total.clamp_min(torch.finfo(total.dtype).tiny),
                       torch.zeros_like(total))


def alignment(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Etmann et al. (2019)'s alignment ``|<x, g>| / ||g||`` per image, with ``g`` the signed
    gradient of the predicted class's logit with respect to ``x`` (model in eval mode; mode and
    ``requires_grad`` flags restored afterwards). 0.0 where ``g`` is zero.

    For a linear model ``f(x) = W x`` this is the distance from ``x`` to the hyperplane
    ``<w_k, x> = 0`` of the predicted class ``k``.

    Shape:
        images: (N, C, H, W) float, finite, >= 0. Returns (N,) on the images' device.

    Raises:
        ValueError: bad images, batch size, or a model output that is not (N, K).
    """
    check_model(model)
    x = _check_image(images, "images")
    check_int("batch_size", batch_size, 1)
    device = model_device(model)
    scores = []
    with preserved_state(model), torch.enable_grad():
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].detach().to(device).requires_grad_(True)
            logits = model(batch)
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                raise ValueError("model must return (N, K) logits")
            picked = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
            (grad,) = torch.autograd.grad(picked, batch)
            g, flat = grad.flatten(1), batch.detach().flatten(1)
            norm = g.norm(dim=1)
            dot = (flat * g).sum(1).abs()
            scores.append(torch.where(norm > 0, dot / norm.clamp_min(torch.finfo(norm.dtype).tiny),
                                      torch.zeros_like(dot)).to(images.device))
    return torch.cat(scores)


def zero_maps(saliency: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which maps are exactly zero everywhere."""
    _check_map(saliency)
    return ~saliency.flatten(1).ne(0).any(1)


def count_zero_maps(saliency: torch.Tensor) -> int:
    """How many maps are exactly zero everywhere (their scores are 0.0 by convention)."""
    return int(zero_maps(saliency).sum())


def accuracy(logits_or_preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of correct predictions, in [0, 1].

    Shape:
        logits_or_preds: (N, K) float logits or (N,) integer predictions; labels: (N,) integer.

    Raises:
        ValueError: mismatched lengths, wrong dtypes or shapes, or an empty batch.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 \
            or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an (N,) integer tensor, got {_describe(labels)}")
    if not isinstance(logits_or_preds, torch.Tensor):
        raise ValueError(f"logits_or_preds must be a tensor, got {_describe(logits_or_preds)}")
    if logits_or_preds.ndim == 2 and logits_or_preds.is_floating_point():
        preds = logits_or_preds.argmax(1)
    elif logits_or_preds.ndim == 1 and not logits_or_preds.is_floating_point():
        preds = logits_or_preds
    else:
        raise ValueError("logits_or_preds must be (N, K) float logits or (N,) integer "
                         f"predictions, got {_describe(logits_or_preds)}")
    if len(preds) != len(labels) or len(labels) == 0:
        raise ValueError(f"logits_or_preds and labels must have the same non-zero length, got "
                         f"{len(preds)} and {len(labels)}")
    return float((preds.cpu() == labels.cpu()).float().mean())


# --- input checks -----------------------------------------------------------------------------

def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    return repr(value)


def _check_map(saliency, name: str = "saliency") -> torch.Tensor:
    if not isinstance(saliency, torch.Tensor) or saliency.ndim != 4 \
            or not saliency.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of shape (N, C, H, W), got "
                         f"{_describe(saliency)}")
    if not torch.isfinite(saliency).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    return saliency


def _check_image(image, name: str = "image") -> torch.Tensor:
    _check_map(image, name)
    if len(image) and float(image.min()) < 0:
        raise ValueError(f"{name} must be non-negative, got a minimum of {float(image.min()):.4g}")
    return image


def _check_pair(saliency, image) -> tuple:
    """Checked (map, image) with the image reduced to one channel when the map has one."""
    _check_map(saliency)
    _check_image(image)
    if saliency.shape != image.shape:
        if saliency.shape[1] == 1 and saliency.shape[:1] + saliency.shape[2:] \
                == image.shape[:1] + image.shape[2:]:
            image = image.mean(1, keepdim=True)
        else:
            raise ValueError(f"saliency and image must have matching shapes (N, 1 or C, H, W), "
                             f"got {tuple(saliency.shape)} and {tuple(image.shape)}")
    return saliency, image.to(saliency.dtype)
