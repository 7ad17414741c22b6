"""Sanity-check baselines that every cleanliness number needs beside it.

Guided Backprop partly reconstructs the input whatever the weights are (Adebayo et al. 2018;
Nie et al. 2018), so a high score alone shows little. The controls here are:

- the same architecture with random weights (:func:`random_weights_model`), and cascading
  randomization from the output layer down (:func:`cascading_randomization`);
- trivial "explainers" that look at the image only: the image itself, its Sobel edge map, and
  seeded uniform noise (:data:`TRIVIAL_EXPLAINERS`);
- the plain gradient (Captum ``Saliency``) beside Guided Backprop.

:func:`control_scores` scores all of them with one metric. No function modifies the model it is
given: randomized models are deep copies, and the RNG stream of the caller is left untouched.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_images, check_int, seeded
from ._modelstate import model_device, preserved_state
from .evaluate import predict
from .metrics import METRICS, cleanliness
from .models import build_model
from .saliency import METHODS, explain


def random_weights_model(architecture_or_model: Union[str, nn.Module], seed: int = 0, *,
                         in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """The same architecture with freshly initialized (random) weights.

    Args:
        architecture_or_model: a name from :data:`rvi.models.MODELS` (built with
            ``in_channels``/``num_classes``), or a model to copy and re-initialize; the given
            model is not modified.
        seed: seeds the initialization (the caller's RNG stream is left untouched).

    Returns:
        A new model. For a copied model, mode and ``requires_grad`` flags are the original's.

    Raises:
        ValueError: an unknown name, a bad seed, or a model with parameters that no
            ``reset_parameters()`` method re-initializes.
    """
    check_int("seed", seed, 0)
    if isinstance(architecture_or_model, str):
        with seeded(seed, torch.device("cpu")):
            return build_model(architecture_or_model, in_channels=in_channels,
                               num_classes=num_classes)
    if not isinstance(architecture_or_model, nn.Module):
        raise ValueError(f"architecture_or_model must be a model name or an nn.Module, got "
                         f"{architecture_or_model!r}")
    model = copy.deepcopy(architecture_or_model)
    layers = [name for name, module in model.named_modules() if _own_params(module)]
    _reset(model, layers, seed)
    return model


def parameter_layers(model: nn.Module, example: torch.Tensor) -> list:
    """Names of the modules that own parameters, in the order the forward pass first calls them.

    Shape:
        example: (n, C, H, W), a few images on any device (one is enough).
    """
    order: list = []
    handles = []
    try:
        for name, module in model.named_modules():
            if _own_params(module):
                handles.append(module.register_forward_hook(
                    lambda m, i, o, name=name: order.append(name) if name not in order else None))
        with preserved_state(model), torch.no_grad():
            model.eval()
            model(example.to(model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    return order


def cascading_randomization(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                            metric: str = "cosine", method: str = "guided_backprop", *,
                            seed: int = 0, batch_size: int = 256) -> list:
    """Mean score as the layers are re-initialized from the output down, one more at a time
    (Adebayo et al. 2018's cascading randomization), on a copy of ``model``.

    Shape:
        images: (N, C, H, W) float in [0, 1]; targets: (N,) int64, kept fixed at every step.

    Args:
        model: the trained classifier (not modified).
        images: the images to explain and score against.
        targets: the class each map explains (e.g. the true labels).
        metric: a key of :data:`rvi.metrics.METRICS`.
        method: a key of :data:`rvi.saliency.METHODS`.
        seed: seeds the re-initialization (step ``i`` uses ``seed + i``).
        batch_size: passed to :func:`rvi.saliency.explain`.

    Returns:
        ``[("none", mean score of the trained model), (layer name, mean score after that layer
        and all above it are random), ...]``, top (output) layer first. A score that stays put
        while the weights go random means the metric does not measure the model.

    Raises:
        ValueError: bad images, targets, metric, method or seed.
    """
    check_images(images, targets)
    _check_metric_method(metric, method)
    check_int("seed", seed, 0)
    work = copy.deepcopy(model)
    layers = parameter_layers(work, images[:1])
    results = [("none", _mean_score(work, images, targets, metric, method, batch_size))]
    for step, name in enumerate(reversed(layers)):
        _reset(work, [name], seed + step)
        results.append((name, _mean_score(work, images, targets, metric, method, batch_size)))
    return results


def image_map(images: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """The trivial explainer "the image itself": the sum over channels.

    Shape:
        images: (N, C, H, W) float in [0, 1]. Returns (N, 1, H, W).
    """
    check_images(images)
    return images.sum(1, keepdim=True)


_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edge_map(images: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """The trivial explainer "edges": Sobel gradient magnitude per channel, summed over
    channels (edge-replicated padding, so image borders add no edges).

    Shape:
        images: (N, C, H, W) float in [0, 1]. Returns (N, 1, H, W), non-negative.
    """
    check_images(images)
    n, c, h, w = images.shape
    kernels = torch.stack([_SOBEL_X, _SOBEL_X.t()]).unsqueeze(1).to(images)
    flat = F.pad(images.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    grads = F.conv2d(flat, kernels)
    magnitude = grads.pow(2).sum(1).sqrt()
    return magnitude.reshape(n, c, h, w).sum(1, keepdim=True)


def noise_map(images: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """The trivial explainer "noise": uniform [0, 1) values from a generator seeded with
    ``seed`` (the global RNG is not used), independent of the image.

    Shape:
        images: (N, C, H, W) float in [0, 1]. Returns (N, 1, H, W).
    """
    check_images(images)
    check_int("seed", seed, 0)
    generator = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    return torch.rand((n, 1, h, w), generator=generator, dtype=images.dtype).to(images.device)


#: Explainers that never look at the model: ``name -> fn(images, *, seed) -> (N, 1, H, W)``.
TRIVIAL_EXPLAINERS: dict = {"image": image_map, "edge": edge_map, "noise": noise_map}


def control_scores(model: nn.Module, images: torch.Tensor,
                   target: Union[str, torch.Tensor] = "true", *, metric: str = "cosine",
                   method: str = "guided_backprop", labels: Optional[torch.Tensor] = None,
                   seed: int = 0, batch_size: int = 256) -> dict:
    """Per-image scores of the model and of every control, with one metric.

    The target is resolved once with the trained model (``"true"`` needs ``labels``;
    ``"predicted"`` is the trained model's prediction) and the same classes are explained for
    the random-weights model.

    Shape:
        images: (N, C, H, W) float in [0, 1]. Each returned tensor is (N,).

    Returns:
        ``{"model": method map of the model, "random_weights": same method on
        random_weights_model(model, seed), "plain_gradient": the model's Saliency map (absent
        when method is already "saliency"), "image", "edge", "noise": trivial explainers
        (absent when the metric ignores the map, e.g. alignment)}``.

    Raises:
        ValueError: bad images, target, labels, metric, method or seed.
    """
    check_images(images, labels)
    _check_metric_method(metric, method)
    check_int("seed", seed, 0)
    targets = _resolve_targets(model, images, target, labels)
    random_model = random_weights_model(model, seed)
    scores = {
        "model": _scores(model, images, targets, metric, method, batch_size),
        "random_weights": _scores(random_model, images, targets, metric, method, batch_size),
    }
    if method != "saliency":
        scores["plain_gradient"] = _scores(model, images, targets, metric, "saliency", batch_size)
    if METRICS[metric].uses_map:
        for name, explainer in TRIVIAL_EXPLAINERS.items():
            scores[name] = cleanliness(explainer(images, seed=seed), images, metric)
    return scores


# --- helpers ----------------------------------------------------------------------------------

def _scores(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, metric: str,
            method: str, batch_size: int) -> torch.Tensor:
    maps = explain(model, images, targets, method, batch_size=batch_size).maps \
        if METRICS[metric].uses_map else None
    return cleanliness(maps, images, metric, model=model)


def _mean_score(model, images, targets, metric, method, batch_size) -> float:
    return float(_scores(model, images, targets, metric, method, batch_size).mean())


def _resolve_targets(model: nn.Module, images: torch.Tensor, target, labels) -> torch.Tensor:
    if isinstance(target, torch.Tensor):
        if target.dtype != torch.int64 or target.shape != (len(images),):
            raise ValueError(f"target must be an int64 tensor of shape ({len(images)},), got "
                             f"{target.dtype} of shape {tuple(target.shape)}")
        return target
    if target == "true":
        if labels is None:
            raise ValueError("target='true' needs labels=(N,) int64 true labels; got None")
        return labels.long()
    if target == "predicted":
        return predict(model, images)
    raise ValueError(f"target must be 'true', 'predicted' or an (N,) int64 tensor; got {target!r}")


def _own_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _reset(model: nn.Module, names: list, seed: int) -> None:
    """Re-initialize the named modules in place (``reset_parameters``), seeded."""
    modules = dict(model.named_modules())
    with seeded(seed, model_device(model)), torch.no_grad():
        for name in names:
            reset: Optional[Callable] = getattr(modules[name], "reset_parameters", None)
            if not callable(reset):
                raise ValueError(f"cannot re-initialize module {name!r} "
                                 f"({type(modules[name]).__name__}): it has parameters but no "
                                 f"reset_parameters() method")
            reset()


def _check_metric_method(metric: str, method: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
