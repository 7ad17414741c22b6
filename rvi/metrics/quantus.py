"""Quantus metrics scored per image like rvi's own: ``quantus:NAME`` in a config's ``metrics``.

Each Quantus 0.6 metric of :data:`SUPPORTED` is registered up front in
:data:`rvi.metrics.METRICS` as a :class:`rvi._core.registry.Metric` named ``quantus:NAME``, with its
direction, range, family and verdict declared here; registering imports nothing from Quantus, so
``import rvi`` stays fast and Quantus optional. Configs accept those names, and the benchmark
scores them through the same pipeline, controls, statistics and verdicts as rvi's metrics.
Scoring imports Quantus (``pip install "rvi[quantus]"``). Every call (``docs/metrics.md``,
"Quantus metrics"):

- passes the maps (N, 1 or C, H, W) as ``a_batch`` (float64, channel dim kept), the images
  (N, C, H, W) in [0, 1] as ``x_batch`` (float32, ``channel_first=True``) and the targets as
  ``y_batch``, with ``abs``/``normalise`` set per metric and ``return_aggregate=False``;
  MaxSensitivity and RandomLogit instead recompute every map with the method (absolute, by
  :func:`rvi.attribution.saliency.explain` as Quantus' ``explain_func``), as rvi's sensitivity_max does;
- puts the model in eval mode (Quantus requires it; restored afterwards), silences Quantus'
  warnings and restores the global NumPy RNG, which Quantus draws from;
- calls metrics with random draws once per image, NumPy seeded from ``(seed, image index)``, so
  scores do not depend on batching or sharding, and the others once per batch;
- scores NaN (left out of means) where Quantus refuses a map: a constant map (e.g. all zero),
  given or recomputed.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch
from torch import nn

from .._core.checks import (check_choice, check_images, check_int, check_map_pair, check_targets, chunks,
                            derived_seed, require_installed)
from .._core.modelstate import model_device, preserved_state
from .._core.registry import METRIC_REGISTRY, Metric
from ..attribution import METHOD_REGISTRY
from ..attribution.saliency import explain
from .faithfulness import CURVE_STEPS, PERTURB_SAMPLES, SENSITIVITY_RADIUS, num_classes_of

#: Prefix of the registered names: ``quantus:Sparseness`` scores Quantus' ``Sparseness``.
PREFIX = "quantus:"
#: ROAD's percentages of pixels imputed: rvi's 5% steps (Quantus' default: 1, 3, ..., 99).
ROAD_PERCENTAGES = tuple(range(5, 100, 5))
#: Infidelity's square patches, in pixels (Quantus' default); images must be multiples of it.
INFIDELITY_PATCH = 4


class QuantusMetric(NamedTuple):
    """How rvi calls one Quantus metric and what a report needs to know about its score.

    ``settings(shape, num_classes, image_seed, quantus)`` gives the constructor's arguments for
    images of ``shape`` (C, H, W); ``reduce`` turns what Quantus returns for n images into (n,)
    scores; ``passes`` counts model passes per 28x28 image (recomputed maps count one each)."""

    family: str
    higher_is_better: bool
    low: float
    high: float
    verdict: bool
    settings: Callable
    description: str
    cannot_show: str
    softmax: bool = False
    needs_method: bool = False
    per_image: bool = False
    passes: int = 0
    reduce: Callable = np.asarray


def pixel_flipping_step(shape) -> int:
    """Features per PixelFlipping step: the largest divisor of H*W (Quantus requires one) that
    gives at least ``CURVE_STEPS`` steps (28x28: 28 features, 28 steps)."""
    pixels = shape[-1] * shape[-2]
    return max(d for d in range(1, pixels + 1) if pixels % d == 0 and pixels // d >= CURVE_STEPS)


def per_image_seed(seed: int, index: int) -> int:
    """The NumPy seed of image ``index``'s Quantus call, from ``(seed, index)``."""
    return derived_seed(seed, index)


def _infidelity_settings(shape, *_) -> dict:
    if shape[-2] % INFIDELITY_PATCH or shape[-1] % INFIDELITY_PATCH:
        raise ValueError(f"images must have a height and width divisible by {INFIDELITY_PATCH} "
                         f"for {PREFIX}Infidelity, got shape {tuple(shape)}")
    return dict(abs=False, normalise=False, perturb_baseline=0.0, n_perturb_samples=1,
                perturb_patch_sizes=[INFIDELITY_PATCH], loss_func="mse")


def _clipped_noise(quantus) -> Callable:
    """Quantus' uniform noise clipped to [0, 1]: rvi's maps are defined on [0, 1] images."""
    def perturb(arr, indices, **kwargs):
        return np.clip(quantus.batch_uniform_noise(arr, indices, **kwargs), 0.0, 1.0)
    return perturb


_SPARSE = "as gini: where the mass lies, or whether it reflects the model"
_OFF_DATA = "as deletion: the model's own resistance to removal moves it (no verdict)"
SUPPORTED = {
    "Sparseness": QuantusMetric(
        "cleanliness", True, 0.0, 1.0, True, lambda *_: dict(abs=True, normalise=False),
        "Quantus Sparseness: Gini index of |s| + 1e-7 (Chalasani et al. 2020)", _SPARSE),
    "PixelFlipping": QuantusMetric(
        "faithfulness", False, 0.0, 1.0, False,
        lambda shape, *_: dict(features_in_step=pixel_flipping_step(shape), abs=False,
                               normalise=False, perturb_baseline=0.0),
        "Quantus PixelFlipping: mean target probability as top-ranked features are set to 0",
        _OFF_DATA, softmax=True, passes=28, reduce=lambda curves: np.mean(curves, axis=1)),
    "Infidelity": QuantusMetric(
        "faithfulness", False, 0.0, math.inf, False, _infidelity_settings,
        "Quantus Infidelity: MSE of <s, x - x_k> against the logit's change, x_k = x with "
        "the first k 4x4 patches set to 0", "scale (squared logit units, no beta): no verdict",
        passes=50),
    "MaxSensitivity": QuantusMetric(
        "faithfulness", False, 0.0, math.inf, True,
        lambda shape, classes, seed, quantus: dict(
            nr_samples=PERTURB_SAMPLES, lower_bound=SENSITIVITY_RADIUS, abs=False, normalise=False,
            perturb_func=_clipped_noise(quantus)),
        "Quantus MaxSensitivity: largest relative change of the method's map under uniform noise",
        "whether the map is right: a constant map is perfectly stable", needs_method=True,
        per_image=True, passes=PERTURB_SAMPLES + 1),
    "ROAD": QuantusMetric(
        "faithfulness", False, 0.0, 1.0, False,
        lambda *_: dict(percentages=list(ROAD_PERCENTAGES), noise=0.01, abs=False,
                        normalise=False),
        "Quantus ROAD: share of 5%..95% imputed (top-ranked first) still classified as target",
        _OFF_DATA, per_image=True, passes=len(ROAD_PERCENTAGES),
        reduce=lambda kept: [np.mean(list(kept.values()))]),  # {percentage: kept}, one image
    "RandomLogit": QuantusMetric(
        "faithfulness", False, -1.0, 1.0, True,
        lambda shape, classes, seed, _: dict(num_classes=classes, seed=seed, abs=False,
                                             normalise=True),
        "Quantus RandomLogit: SSIM of the map and the map of a random other class",
        "whether the map is right: only that it depends on the class", needs_method=True,
        per_image=True, passes=2),
}


def quantus_scores(name: str, maps: torch.Tensor, images: torch.Tensor, *,
                   model: Optional[nn.Module] = None, targets: Optional[torch.Tensor] = None,
                   method: Optional[str] = None, seed: int = 0, batch_size: int = 256,
                   offset: int = 0) -> torch.Tensor:
    """One score per image of Quantus' metric ``name`` (a key of :data:`SUPPORTED`).

    Shape:
        maps: (N, 1 or C, H, W) float, finite (unused, may be None, with ``needs_method``);
        images: (N, C, H, W) float in [0, 1] (>= 0 without a model); targets: (N,) int64.
        Returns (N,) float in the metric's range, NaN where Quantus refuses the map.

    The arguments mean what they mean for :func:`rvi.metrics.score`: ``method`` is the
    :func:`rvi.attribution.saliency.explain` method whose absolute maps Quantus recomputes
    (``needs_method``); ``seed`` seeds the per-image draws and ``explain``.

    Raises:
        ValueError: an unsupported ``name`` (the message lists the supported ones), bad inputs.
        ImportError: Quantus is not installed.
    """
    if name not in SUPPORTED:
        raise ValueError(f"name must be one of {', '.join(SUPPORTED)} (requested as "
                         f"{PREFIX}NAME); got {name!r}")
    spec = SUPPORTED[name]
    if spec.needs_method:  # Quantus recomputes every map, as rvi's sensitivity_max does
        check_choice("method", method, METHOD_REGISTRY.names())
    else:
        maps = check_map_pair(maps, images)[0]
    for what, value, low in (("seed", seed, 0), ("batch_size", batch_size, 1), ("offset", offset, 0)):
        check_int(what, value, low)
    quantus = _import_quantus()
    needs_model = spec.family == "faithfulness"
    device = classes = None
    if needs_model:
        check_images(images)
        device = model_device(model)
        with preserved_state(model):
            classes = num_classes_of(model.eval(), images[:1].to(device))
        check_targets(targets, len(images), classes)
    x = images.detach().cpu().float().numpy()
    y = targets.cpu().numpy() if needs_model else np.zeros(len(x), dtype=np.int64)
    a, refused = None, np.zeros(len(x), bool)  # refused: constant maps, which Quantus refuses
    if not spec.needs_method:
        a = maps.detach().cpu().double().numpy()
        refused = (a.reshape(len(a), -1) == a.reshape(len(a), -1)[:, :1]).all(1)
    scores = np.full(len(x), np.nan)
    with _quantus_call(model if needs_model else None):
        for part in chunks(len(x), 1 if spec.per_image else batch_size, offset):
            index = np.arange(part.start, part.stop)[~refused[part]]
            if not len(index):
                continue
            np.random.seed(image_seed := per_image_seed(seed, offset + part.start))
            metric = getattr(quantus, name)(
                **spec.settings(x.shape[1:], classes, image_seed, quantus), return_aggregate=False,
                disable_warnings=True, display_progressbar=False)
            call = dict(model=model if needs_model else None, x_batch=x[index], y_batch=y[index],
                        a_batch=None if a is None else a[index].copy(), channel_first=True,
                        softmax=spec.softmax, device=None if device is None else str(device),
                        batch_size=len(index))
            if spec.needs_method:
                call["explain_func"] = _explainer(method, seed, batch_size)
            try:
                scores[index] = spec.reduce(metric(**call))
            except AssertionError:  # Quantus refuses a constant map it computed itself
                if not spec.needs_method:
                    raise
    return torch.from_numpy(scores).to(device=images.device, dtype=images.dtype)


def _import_quantus():
    require_installed("quantus", "quantus", f"the {PREFIX}NAME metrics (Quantus 0.6)")
    import quantus  # optional dependency (pip install "rvi[quantus]"), imported where used
    return quantus


@contextlib.contextmanager
def _quantus_call(model: Optional[nn.Module]):
    """Model in eval mode (restored), Quantus' warnings silenced, the NumPy RNG restored."""
    state = np.random.get_state()
    with warnings.catch_warnings(), \
            (preserved_state(model) if model is not None else contextlib.nullcontext()):
        warnings.filterwarnings("ignore", module=r"quantus(\.|$)")
        if model is not None:
            model.eval()
        try:
            yield
        finally:
            np.random.set_state(state)


def _explainer(method: str, seed: int, batch_size: int) -> Callable:
    """Quantus ``explain_func``: :func:`rvi.attribution.saliency.explain`'s absolute maps of ``method``."""
    def explain_func(model, inputs, targets, **_):
        device = model_device(model)
        x = torch.as_tensor(inputs, dtype=torch.float32, device=device)
        target = torch.as_tensor(targets, dtype=torch.int64, device=device)
        maps = explain(model, x, target, method, batch_size=batch_size, seed=seed).maps
        return maps.detach().cpu().double().numpy()
    return explain_func


for _name, _spec in SUPPORTED.items():
    METRIC_REGISTRY.register(Metric(
        PREFIX + _name, _spec.low, _spec.high, _spec.higher_is_better,
        _spec.family == "faithfulness", True, _spec.description, _spec.cannot_show,
        family=_spec.family, needs_targets=_spec.family == "faithfulness",
        needs_method=_spec.needs_method, function=functools.partial(quantus_scores, _name),
        uses_sign=_spec.family == "faithfulness" and not _spec.needs_method,
        verdict=_spec.verdict, random_draws=_spec.per_image,
        expansion=int(_spec.passes > 0), passes_per_image=_spec.passes,
        requires=("quantus", "quantus")))
