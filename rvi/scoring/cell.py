"""One scoring path: explain a model's inputs with each method, score every map with every metric.

The benchmark's cells, its random-weights control, :func:`rvi.scoring.controls.control_scores` and the
benchmark scripts all score through :func:`score_model`, so a target option or a metric means the
same everywhere:

- ``target="true"``: every map explains the true label;
- ``target="predicted"``: every model, controls included, explains its *own* prediction on the
  input it sees (:func:`rvi.attribution.saliency.explain`); a tensor of classes is used as given.

Cleanliness metrics are scored against each reference image (``clean`` x, and ``perturbed`` x_adv
when the input is adversarial). Faithfulness metrics ask the model about the input it saw, so they
are scored once, against that input, for the class the map explains; those marked
``signed_map`` on the method's signed map. Metrics that score the
model's own gradient (``uses_map=False``) are scored once, on the input the model saw, under the
explainer name ``model``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .._core.reuse import reuse_model_queries
from ..attribution import METHOD_REGISTRY
from ..attribution.saliency import explain
from ..metrics import METRICS, score
from .records import MODEL_EXPLAINER, ScoreKey


@reuse_model_queries()  # the metrics of one input share curves and logit changes
def score_model(model: nn.Module, inputs: torch.Tensor, *, references: dict,
                methods: Sequence[str], metrics: Sequence[str],
                target: Union[str, torch.Tensor] = "true", labels: Optional[torch.Tensor] = None,
                seed: int = 0, batch_size: int = 256, faithfulness_n: Optional[int] = None,
                offset: int = 0) -> tuple:
    """Per-image scores of ``model``'s maps of ``inputs``.

    Shape:
        inputs: (N, C, H, W) float in [0, 1]; each reference image: the same shape.

    Args:
        references: ``{name: images}`` to compare maps with, e.g. ``{"clean": x,
            "perturbed": x_adv}``; the entry that *is* ``inputs`` names the input the model saw.
        methods: attribution methods (:data:`rvi.attribution.saliency.METHODS`); each map is made once.
        metrics: keys of :data:`rvi.metrics.METRICS`.
        target, labels: see the module docstring.
        faithfulness_n: score faithfulness metrics on the first N images only (the rest NaN).
        offset: index of ``inputs[0]`` in a larger set scored in parts (a rank's shard): seeded
            randomness (SmoothGrad noise, faithfulness perturbations) and ``faithfulness_n``
            follow the global image index, so each image scores as in one call on the whole set.

    Returns:
        ``(scores, attributions)``: ``{ScoreKey: (N,) float32 array}`` and
        ``{method: Attribution}``.
    """
    seen = next((name for name, image in references.items() if image is inputs), None)
    if seen is None:
        raise ValueError("references must hold the inputs themselves under one name (e.g. "
                         "'clean' for natural inputs); got none that is inputs")
    scores, attributions = {}, {}
    signed_metrics = [m for m in metrics if METRICS[m].signed_map]
    for method in methods:
        attribution = explain(model, inputs, target, method, labels=labels,
                              batch_size=batch_size, seed=seed, offset=offset)
        attributions[method] = attribution
        signed = attribution.maps
        if signed_metrics and METHOD_REGISTRY[method].signed:
            # only the images faithfulness is scored on; the others' scores are NaN anyway
            count = scored_count(len(inputs), faithfulness_n, offset)
            signed = signed.clone()
            if count:
                signed[:count] = explain(model, inputs[:count], attribution.target[:count],
                                         method, absolute=False, batch_size=batch_size,
                                         seed=seed, offset=offset).maps
        for metric in metrics:
            info = METRICS[metric]
            if not info.uses_map:
                continue
            if info.family == "cleanliness":
                for name, image in references.items():
                    scores[ScoreKey(method, metric, name)] = _array(score(metric, attribution.maps,
                                                                          image, model=model))
                continue
            maps = signed if info.signed_map else attribution.maps
            scores[ScoreKey(method, metric, seen)] = faithfulness_scores(
                model, metric, maps, inputs, attribution.target, method=method, seed=seed,
                batch_size=batch_size, faithfulness_n=faithfulness_n, offset=offset)
    for metric in metrics:
        if not METRICS[metric].uses_map:
            scores[ScoreKey(MODEL_EXPLAINER, metric, seen)] = _array(
                score(metric, None, inputs, model=model, batch_size=batch_size))
    return scores, attributions


def scored_count(n: int, faithfulness_n: Optional[int], offset: int) -> int:
    """How many of ``n`` images starting at global index ``offset`` get faithfulness scores."""
    return n if faithfulness_n is None else max(0, min(faithfulness_n - offset, n))


def faithfulness_scores(model: nn.Module, metric: str, maps: torch.Tensor, inputs: torch.Tensor,
                        targets: torch.Tensor, *, method: Optional[str] = None, seed: int = 0,
                        batch_size: int = 256, faithfulness_n: Optional[int] = None,
                        offset: int = 0) -> np.ndarray:
    """(N,) float32 scores of one faithfulness ``metric`` of ``maps`` of ``inputs`` for the classes
    ``targets``: the first ``faithfulness_n - offset`` images scored, the rest NaN."""
    count = scored_count(len(inputs), faithfulness_n, offset)
    values = np.full(len(inputs), np.nan, dtype=np.float32)
    if count:
        values[:count] = _array(score(
            metric, maps[:count], inputs[:count], model=model,
            targets=targets[:count].to(inputs.device), method=method, seed=seed,
            batch_size=batch_size, offset=offset))
    return values


def score_maps(maps_by_explainer: dict, images: torch.Tensor, metrics: Sequence[str],
               reference: str = "clean") -> dict:
    """Scores of maps that need no model (e.g. the trivial explainers) with every map metric.

    Returns ``{ScoreKey: (N,) float32 array}``; metrics that need the model are skipped (see
    :func:`score_maps_with_model`).
    """
    scores = {}
    for explainer, maps in maps_by_explainer.items():
        for metric in metrics:
            if METRICS[metric].uses_map and not METRICS[metric].needs_model:
                scores[ScoreKey(explainer, metric, reference)] = _array(
                    score(metric, maps, images))
    return scores


@reuse_model_queries()
def score_maps_with_model(model: nn.Module, maps_by_explainer: dict, images: torch.Tensor,
                          targets: torch.Tensor, metrics: Sequence[str], *, seed: int = 0,
                          batch_size: int = 256, faithfulness_n: Optional[int] = None,
                          offset: int = 0, reference: str = "clean") -> dict:
    """Scores of maps made without the model (the trivial explainers) with every faithfulness
    metric a verdict is drawn on that reads ``model``'s output on ``images`` for ``targets``
    (those that recompute maps with a method, ``needs_method``, are skipped): the control a
    model's own maps must beat.

    Returns ``{ScoreKey: (N,) float32 array}``.
    """
    scores = {}
    for explainer, maps in maps_by_explainer.items():
        for metric in metrics:
            info = METRICS[metric]
            if info.family == "faithfulness" and info.verdict and info.uses_map \
                    and not info.needs_method:
                scores[ScoreKey(explainer, metric, reference)] = faithfulness_scores(
                    model, metric, maps, images, targets, seed=seed, batch_size=batch_size,
                    faithfulness_n=faithfulness_n, offset=offset)
    return scores


def _array(scores: torch.Tensor) -> np.ndarray:
    return scores.detach().cpu().numpy().astype(np.float32)
