"""Per-image scores of saliency maps (cleanliness and faithfulness), and accuracy.

Cleanliness scores compare a saliency map ``s`` with its image ``x`` (both flattened per sample)
and live here; faithfulness scores (deletion, insertion, infidelity, sensitivity) and the Gini
sparseness live in :mod:`rvi.faithfulness`. Every score returns one float per image; every
metric's name, range, direction, needs and family are data in :data:`METRICS`, and
:func:`score` computes any of them, so reports need no special cases. Conventions (see
``docs/metrics.md``):

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
from ._modelstate import channels_last, model_device, preserved_state

FAMILIES = ("cleanliness", "faithfulness")

#: Pixels above this value count as the stroke (foreground) in ``foreground_mass``.
FOREGROUND_THRESHOLD = 0.5


@dataclass(frozen=True)
class MetricInfo:
    """What a report needs to know about a metric.

    Attributes:
        name: the ``kind`` passed to :func:`score` / :func:`cleanliness`.
        low, high: the range of the score for non-negative maps (``math.inf`` if unbounded).
        higher_is_better: whether a higher score means a cleaner / more faithful map.
        needs_model: the score needs the model (pass ``model=``).
        uses_map: the score depends on the saliency method (``alignment`` scores the model's
            own gradient and ignores the map, so map-only controls do not apply to it;
            ``sensitivity_max`` recomputes the maps of ``method`` itself).
        description: one line for tables and help text.
        cannot_show: one line on what the score does not show.
        family: ``"cleanliness"`` (does the map look like the digit / is it sparse) or
            ``"faithfulness"`` (does the map reflect what the model uses).
        needs_targets: the score needs the class each map explains (pass ``targets=``).
        needs_method: the score recomputes maps and needs the method's name (``method=``).
    """

    name: str
    low: float
    high: float
    higher_is_better: bool
    needs_model: bool
    uses_map: bool
    description: str
    cannot_show: str = ""
    family: str = "cleanliness"
    needs_targets: bool = False
    needs_method: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {self.family!r}")


_ALIGNMENT_LOGIT = dict(
    low=0.0, high=math.inf, higher_is_better=True, needs_model=True, uses_map=False,
    description="|<x, g>| / ||g||, g = gradient of the predicted logit (Etmann et al. 2019)",
    cannot_show="any attribution method's quality; the boundary distance only for linear models "
                "with zero bias (it uses the logit, not the margin)")

METRICS = {
    "inner": MetricInfo(
        "inner", 0.0, math.inf, True, False, True,
        "<s, x>: the seed study's score; scales with the map's magnitude",
        "anything independent of the gradient's scale; whether the map reflects the model"),
    "cosine": MetricInfo(
        "cosine", 0.0, 1.0, True, False, True,
        "<s, x> / (||s|| ||x||): scale-free similarity of map and image",
        "whether the map reflects the model (the image itself scores 1)"),
    "foreground_mass": MetricInfo(
        "foreground_mass", 0.0, 1.0, True, False, True,
        f"share of |s| on stroke pixels (x > {FOREGROUND_THRESHOLD:g})",
        "where on the stroke the mass lies; whether the map reflects the model"),
    "alignment_logit": MetricInfo("alignment_logit", **_ALIGNMENT_LOGIT),
    # the seed's name, kept so that configs and saved records that say "alignment" still work
    "alignment": MetricInfo("alignment", **_ALIGNMENT_LOGIT),
    "alignment_margin": MetricInfo(
        "alignment_margin", 0.0, math.inf, True, True, False,
        "|<x, g>| / ||g||, g = gradient of f_k - max_{j!=k} f_j (k predicted): the margin form",
        "any attribution method's quality; the boundary distance exactly only for a linear "
        "model with zero bias"),
    "gini": MetricInfo(
        "gini", 0.0, 1.0, True, False, True,
        "Gini index of |s| (sparseness; Chalasani et al. 2020)",
        "where the mass lies or whether it reflects the model (one bright pixel is maximal)"),
    "deletion": MetricInfo(
        "deletion", 0.0, 1.0, False, True, True,
        "AUC of the target probability as top-ranked pixels are set to 0 (Petsiuk et al. 2018)",
        "anything off the data: zeroed images are out of distribution, and the order of pixels "
        "of equal rank is arbitrary", family="faithfulness", needs_targets=True),
    "insertion": MetricInfo(
        "insertion", 0.0, 1.0, True, True, True,
        "AUC of the target probability as top-ranked pixels are inserted into a black image",
        "anything off the data: partly inserted images are out of distribution",
        family="faithfulness", needs_targets=True),
    "infidelity": MetricInfo(
        "infidelity", 0.0, math.inf, False, True, True,
        "Captum infidelity (normalized) of the target logit under Gaussian noise (Yeh et al. 2019)",
        "faithfulness to large changes; the sign is lost when maps are absolute",
        family="faithfulness", needs_targets=True),
    "sensitivity_max": MetricInfo(
        "sensitivity_max", 0.0, math.inf, False, True, True,
        "Captum max-sensitivity: largest relative change of the method's map under small noise",
        "whether the map is right: a constant map is perfectly stable",
        family="faithfulness", needs_targets=True, needs_method=True),
}


def score(kind: str, maps: Optional[torch.Tensor], images: torch.Tensor, *,
          model: Optional[nn.Module] = None, targets: Optional[torch.Tensor] = None,
          method: Optional[str] = None, seed: int = 0, batch_size: int = 256,
          offset: int = 0) -> torch.Tensor:
    """One score per image for any metric in :data:`METRICS`.

    Shape:
        maps: (N, 1 or C, H, W) float (None where ``uses_map`` is False or ``needs_method``);
        images: (N, C, H, W) float in [0, 1]; targets: (N,) int64. Returns (N,) float.

    Args:
        kind: a key of :data:`METRICS`.
        maps: the saliency maps scored.
        images: the images they explain.
        model: the classifier (``needs_model``).
        targets: the class each map explains (``needs_targets``).
        method: a key of :data:`rvi.saliency.METHODS` (``needs_method``).
        seed: seeds the random perturbations of ``infidelity`` and ``sensitivity_max``.
        batch_size: the most inputs the model sees in one pass.
        offset: index of ``images[0]`` in a larger set scored in parts (a rank's shard): the
            random perturbations of image ``i`` are those of image ``offset + i``, and batched
            faithfulness metrics cut their model calls as one call on the whole set would.

    Raises:
        ValueError: unknown ``kind``, a missing model/targets/method/maps, or bad inputs.
    """
    from . import faithfulness

    if kind not in METRICS:
        raise ValueError(f"kind must be one of {', '.join(METRICS)}; got {kind!r}")
    info = METRICS[kind]
    if info.needs_model and model is None:
        raise ValueError(f"kind {kind!r} needs model=, got None")
    if info.needs_targets and targets is None:
        raise ValueError(f"kind {kind!r} needs targets=(N,) int64 classes, got None")
    if info.needs_method and method is None:
        raise ValueError(f"kind {kind!r} needs method= (a saliency method's name), got None")
    if info.uses_map and not info.needs_method and maps is None:
        raise ValueError(f"kind {kind!r} needs maps=(N, 1 or C, H, W), got None")
    if kind in ("alignment", "alignment_logit", "alignment_margin"):
        if maps is not None:
            _check_pair(maps, images)
        if kind == "alignment_margin":
            return alignment_margin(model, images, batch_size=batch_size)
        return alignment(model, images, batch_size=batch_size)
    if kind == "sensitivity_max":
        return faithfulness.sensitivity_max(model, images, targets, method, seed=seed,
                                            batch_size=batch_size, offset=offset)
    if kind == "infidelity":
        return faithfulness.infidelity(model, images, maps, targets, seed=seed,
                                       batch_size=batch_size, offset=offset)
    if kind in ("deletion", "insertion"):
        scorer = faithfulness.deletion if kind == "deletion" else faithfulness.insertion
        return scorer(model, images, maps, targets, batch_size=batch_size, offset=offset)
    s, x = _check_pair(maps, images)
    if kind == "gini":
        return faithfulness.gini(s)
    if kind == "inner":
        return inner(s, x)
    if kind == "cosine":
        return cosine(s, x)
    return foreground_mass(s, x)


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


def _alignment(model: nn.Module, images: torch.Tensor, batch_size: int, margin: bool
               ) -> torch.Tensor:
    check_model(model)
    x = _check_image(images, "images")
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
