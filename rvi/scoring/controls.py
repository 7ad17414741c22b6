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
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._core.catalog import RANDOMIZATION_STEPS
from .._core.checks import check_choice, check_images, check_int, seeded
from .._core.modelstate import model_device, preserved_state
from ..attribution.saliency import METHODS, explain
from ..metrics import METRICS, score
from ..metrics.similarity import SIMILARITIES
from ..models.architectures import build_model
from .cell import score_maps, score_model

#: Modes of the layer randomization test (Adebayo et al. 2018), also names of controls.
RANDOMIZATION_MODES = ("cascading", "independent")


def random_weights_model(architecture_or_model: Union[str, nn.Module], seed: int = 0, *,
                         in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """The same architecture with freshly initialized (random) weights.

    Args:
        architecture_or_model: a name from :data:`rvi.models.architectures.MODELS` (built with
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


#: ``"auto"`` steps through the layers of a model with at most this many modules owning
#: parameters (LeNet has 5, the Madry CNN 4: their committed per-layer curves stay), else blocks.
LAYER_STEPS_UP_TO = 12
#: ``"blocks"`` makes at most this many steps: more blocks are merged into consecutive groups.
MAX_BLOCK_STEPS = 12


def randomization_steps(model: nn.Module, example: torch.Tensor, steps: str = "auto") -> list:
    """The steps of the layer randomization test, in forward order (the test walks them from
    the output down): ``[(name, [module names re-initialized together]), ...]``.

    ``"layers"``: every module owning parameters is a step. ``"blocks"``: the model's blocks,
    read off its module tree: its top-level children that hold parameters, where a child holding
    more than half of the model's parameter modules (a wrapper, or a container of all the
    stages) is replaced by its own children, recursively. For a RobustBench WideResNet that is
    the stem, the three stages, the last BatchNorm and the classifier; for a torchvision ResNet
    the stem, its BatchNorm, ``layer1``-``layer4`` and ``fc``; for rvi's ResNet-18 the stem, its
    four stages, the BatchNorm and the classifier. More than :data:`MAX_BLOCK_STEPS` blocks (a flat
    ``nn.Sequential`` of many layers) are merged into that many consecutive groups, named
    ``first..last``. ``"auto"``: layers for a model with at most :data:`LAYER_STEPS_UP_TO`
    parameter modules, else blocks (Adebayo et al. 2018 randomize Inception v3 block by block).

    Shape:
        example: (n, C, H, W), a few images on any device (one is enough).
    """
    check_choice("steps", steps, RANDOMIZATION_STEPS)
    layers = parameter_layers(model, example)
    if steps == "layers" or (steps == "auto" and len(layers) <= LAYER_STEPS_UP_TO):
        return [(name, [name]) for name in layers]
    blocks = _blocks(model, "", len(layers))
    groups: dict = {}
    for layer in layers:  # a layer outside every block (parameters of the root) is its own step
        block = next((b for b in blocks if layer == b or layer.startswith(b + ".")), layer)
        groups.setdefault(block, []).append(layer)
    named = list(groups.items())
    if len(named) <= MAX_BLOCK_STEPS:
        return named
    bounds = np.linspace(0, len(named), MAX_BLOCK_STEPS + 1).round().astype(int)
    return [(named[a][0] if b == a + 1 else f"{named[a][0]}..{named[b - 1][0]}",
             [m for _, group in named[a:b] for m in group]) for a, b in zip(bounds[:-1], bounds[1:])]


def _blocks(module: nn.Module, prefix: str, total: int) -> list:
    """Names of ``module``'s children holding parameter modules, a child holding more than half
    of the model's ``total`` expanded into its own children."""
    names = []
    for name, child in module.named_children():
        held = sum(1 for m in child.modules() if _own_params(m))
        if not held:
            continue
        if held > total / 2 and held > 1 and any(True for _ in child.children()):
            names += _blocks(child, f"{prefix}{name}.", total)
        else:
            names.append(f"{prefix}{name}")
    return names


def cascading_randomization(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                            metric: str = "cosine", method: str = "guided_backprop", *,
                            seed: int = 0, batch_size: int = 256) -> list:
    """Mean ``metric`` as the layers are re-initialized from the output down (the score half of
    :func:`randomization_curve` in cascading mode, for one metric).

    Shape:
        images: (N, C, H, W) float in [0, 1]; targets: (N,) int64, kept fixed at every step.

    Returns:
        ``[("none", mean score of the trained model), (layer name, mean score after that layer
        and all above it are random), ...]``, top (output) layer first.
    """
    rows = randomization_curve(model, images, targets, method=method, metrics=(metric,),
                               mode="cascading", seed=seed, batch_size=batch_size)
    return [(row["layer"], row["mean"]) for row in rows if row["kind"] == "score"]


def randomized_maps(model: nn.Module, images: torch.Tensor,
                    target: Union[str, torch.Tensor] = "true", *,
                    labels: Optional[torch.Tensor] = None, method: str = "guided_backprop",
                    mode: str = "cascading", seed: int = 0, absolute: bool = True,
                    batch_size: int = 256, steps: str = "auto") -> Iterator[tuple]:
    """Adebayo et al. (2018)'s model-randomization steps on a copy of ``model``, with their maps.

    ``mode="cascading"`` re-initializes the steps of :func:`randomization_steps` (``steps``: its
    layers or blocks of modules owning parameters, with their own ``reset_parameters()``) from
    the output down, one more at each step; ``"independent"`` one step at a time, the others
    trained. Step ``i`` from the output is re-initialized with seed ``seed + i``. The classes
    explained are resolved at step 0, with the trained model (``"true"``: ``labels``;
    ``"predicted"``: its predictions), and kept at every step.

    Shape:
        images: (N, C, H, W) float in [0, 1].

    Yields:
        ``(step, layer, model at that step, Attribution)``: step 0 is the trained model (layer
        ``"none"``), step ``i`` has the ``i``-th layer or block from the output re-initialized
        (``layer`` is its name).
    """
    check_images(images, labels)
    if mode not in RANDOMIZATION_MODES:
        raise ValueError(f"mode must be cascading or independent, got {mode!r}")
    check_choice("method", method, METHODS)
    check_int("seed", seed, 0)
    work = copy.deepcopy(model)
    trained = {k: v.clone() for k, v in work.state_dict().items()}
    groups = list(reversed(randomization_steps(work, images[:1], steps)))
    for step, (layer, modules) in enumerate([("none", [])] + groups):
        if mode == "independent" and step > 1:
            work.load_state_dict(trained)
        if step > 0:
            _reset(work, modules, seed + step - 1)
        attribution = explain(work, images, target, method, labels=labels, absolute=absolute,
                              batch_size=batch_size)
        target = attribution.target  # the classes of step 0, kept
        yield step, layer, work, attribution


#: Kinds of :func:`randomization_curve`'s similarity rows: the step's maps against the trained
#: maps of the same image, of another image (the floor: layout all maps share), and the
#: per-image difference of the two; and (step 0) the trivial image and edge maps against the
#: trained maps.
SIMILARITY_KINDS = ("similarity", "floor", "excess", "image map", "edge map")


def randomization_curve(model: nn.Module, images: torch.Tensor,
                        target: Union[str, torch.Tensor] = "true", *,
                        labels: Optional[torch.Tensor] = None, method: str = "guided_backprop",
                        metrics: Sequence[str] = ("cosine",), mode: str = "cascading",
                        seed: int = 0, batch_size: int = 256, steps: str = "auto") -> list:
    """Scores and map similarities along :func:`randomized_maps` (signed maps; the absolute map
    of a one-channel image is their absolute value, else it is made again).

    Every measure of :data:`rvi.metrics.similarity.SIMILARITIES` is computed on absolute maps (its
    name) and on signed maps (``<name>_signed``). The floor compares image ``i``'s map at the
    step with the trained map of image ``i - 1`` (a derangement; needs N >= 2), so it measures
    what maps of different images share.

    Returns:
        Rows ``{mode, method, step, layer, kind, metric, mean, sd, n}``: ``kind="score"`` rows
        hold each metric of ``metrics`` (absolute maps, against the clean image); the kinds of
        :data:`SIMILARITY_KINDS` hold similarities (``similarity`` is 1 at step 0).
        ``mean``/``sd`` are over the N images.
    """
    for metric in metrics:
        _check_metric_method(metric, method)
    rows, original = [], None

    def add(step, layer, kind, name, scores):
        scores = scores.double()
        rows.append(dict(mode=mode, method=method, step=step, layer=layer, kind=kind,
                         metric=name, mean=float(scores.mean()),
                         sd=float(scores.std()) if len(scores) > 1 else 0.0, n=len(scores)))

    for step, layer, work, attribution in randomized_maps(
            model, images, target, labels=labels, method=method, mode=mode, seed=seed,
            absolute=False, batch_size=batch_size, steps=steps):
        signed = attribution.maps
        absolute = signed.abs() if images.shape[1] == 1 else explain(
            work, images, attribution.target, method, batch_size=batch_size).maps
        maps = {True: absolute, False: signed}
        original = maps if original is None else original
        for metric in metrics:
            add(step, layer, "score", metric, score(metric, absolute, images, model=work,
                                                    targets=attribution.target, method=method,
                                                    seed=seed, batch_size=batch_size))
        for name, fn in SIMILARITIES.items():
            for is_absolute in (True, False):
                label = name if is_absolute else f"{name}_signed"
                same = fn(maps[is_absolute], original[is_absolute], absolute=is_absolute)
                add(step, layer, "similarity", label, same)
                if len(images) < 2:
                    continue
                floor = fn(maps[is_absolute].roll(1, 0), original[is_absolute],
                           absolute=is_absolute)
                add(step, layer, "floor", label, floor)
                add(step, layer, "excess", label, same - floor)
                if step == 0:
                    for kind, trivial in (("image map", image_map), ("edge map", edge_map)):
                        similarity = fn(trivial(images).to(signed), original[is_absolute],
                                        absolute=is_absolute)
                        add(step, layer, kind, label, similarity)
    return rows


def randomization_similarity(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                             method: str = "guided_backprop", mode: str = "cascading", *,
                             seed: int = 0, measures: Sequence[str] = tuple(SIMILARITIES),
                             absolute: bool = True, batch_size: int = 256) -> list:
    """Adebayo et al. (2018)'s model-parameter randomization test, as map similarities.

    Layers (modules owning parameters) are re-initialized on a deep copy of ``model`` with
    their own ``reset_parameters()``, from the output layer down. ``"cascading"``: cumulative
    (after step ``i`` the top ``i + 1`` layers are random); ``"independent"``: one layer at a
    time, the others trained. Layer ``i`` (counted from the output) is re-initialized with seed
    ``seed + i`` in both modes. Targets stay fixed.

    Shape:
        images: (N, C, H, W) float in [0, 1]; targets: (N,) int64.

    Returns:
        ``[(layer name, {measure: (N,) float64 similarity of the randomized map to the
        original map})]``, output layer first. A method that passes the test drops towards 0.

    Raises:
        ValueError: bad images, targets, method, mode, measures or seed; a layer without
            ``reset_parameters()``.
    """
    check_images(images, targets)
    if mode not in RANDOMIZATION_MODES:
        raise ValueError(f"mode must be one of {', '.join(RANDOMIZATION_MODES)}; got {mode!r}")
    measures = tuple(measures)
    if not measures or any(m not in SIMILARITIES for m in measures):
        raise ValueError(f"measures must be a non-empty subset of {', '.join(SIMILARITIES)}; "
                         f"got {measures!r}")
    results, original = [], None
    for step, layer, _, attribution in randomized_maps(
            model, images, targets, method=method, mode=mode, seed=seed, absolute=absolute,
            batch_size=batch_size):
        maps = attribution.maps.cpu()
        if step == 0:
            original = maps
            continue
        results.append((layer, {m: SIMILARITIES[m](maps, original) for m in measures}))
    return results


def image_map(images: torch.Tensor, *, seed: int = 0, offset: int = 0) -> torch.Tensor:
    """The trivial explainer "the image itself": the sum over channels.

    Shape:
        images: (N, C, H, W) float in [0, 1]. Returns (N, 1, H, W).
    """
    check_images(images)
    return images.sum(1, keepdim=True)


_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edge_map(images: torch.Tensor, *, seed: int = 0, offset: int = 0) -> torch.Tensor:
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


def noise_map(images: torch.Tensor, *, seed: int = 0, offset: int = 0) -> torch.Tensor:
    """The trivial explainer "noise": uniform [0, 1) values from a generator seeded with
    ``seed`` (the global RNG is not used), independent of the image. ``offset``: index of
    ``images[0]`` in a larger set (a rank's shard); image ``i`` gets the noise of image
    ``offset + i`` of one call on the whole set.

    Shape:
        images: (N, C, H, W) float in [0, 1]. Returns (N, 1, H, W).
    """
    check_images(images)
    check_int("seed", seed, 0)
    check_int("offset", offset, 0)
    generator = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    noise = torch.rand((offset + n, 1, h, w), generator=generator, dtype=images.dtype)
    return noise[offset:].to(images.device)


#: Explainers that never look at the model: ``name -> fn(images, *, seed, offset) -> (N, 1, H, W)``
#: (``offset``: index of ``images[0]`` in a sharded set; only ``noise`` depends on it).
TRIVIAL_EXPLAINERS: dict = {"image": image_map, "edge": edge_map, "noise": noise_map}


def control_scores(model: nn.Module, images: torch.Tensor,
                   target: Union[str, torch.Tensor] = "true", *, metric: str = "cosine",
                   method: str = "guided_backprop", labels: Optional[torch.Tensor] = None,
                   seed: int = 0, batch_size: int = 256) -> dict:
    """Per-image scores of the model and of every control, with one metric, through the
    benchmark's scoring path (:func:`rvi.scoring.cell.score_model`): with ``target="predicted"``
    each model, the random-weights one included, explains its own prediction.

    Shape:
        images: (N, C, H, W) float in [0, 1]. Each returned tensor is (N,).

    Returns:
        ``{"model": method map of the model, "random_weights": same method on
        random_weights_model(model, seed), "plain_gradient": the model's Saliency map (absent
        when method is already "saliency"), "image", "edge", "noise": trivial explainers;
        the last four are absent when the metric ignores the map, e.g. alignment}``.

    Raises:
        ValueError: bad images, target, labels, metric, method or seed.
    """
    check_images(images, labels)
    _check_metric_method(metric, method)
    check_int("seed", seed, 0)
    uses_map = METRICS[metric].uses_map
    methods = (method,) if method == "saliency" or not uses_map else (method, "saliency")

    def scores_of(scored_model: nn.Module, scored_methods: tuple) -> dict:
        scores, _ = score_model(scored_model, images, references={"clean": images},
                                methods=scored_methods, metrics=(metric,), target=target,
                                labels=labels, seed=seed, batch_size=batch_size)
        return {(key.explainer if uses_map else method): torch.from_numpy(values)
                for key, values in scores.items()}

    own = scores_of(model, methods)
    result = {"model": own[method],
              "random_weights": scores_of(random_weights_model(model, seed), (method,))[method]}
    if "saliency" in own and method != "saliency":
        result["plain_gradient"] = own["saliency"]
    if uses_map:
        trivial = {name: fn(images, seed=seed) for name, fn in TRIVIAL_EXPLAINERS.items()}
        result.update({key.explainer: torch.from_numpy(values)
                       for key, values in score_maps(trivial, images, (metric,)).items()})
    return result


# --- helpers ----------------------------------------------------------------------------------

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
    check_choice("metric", metric, tuple(METRICS))
    check_choice("method", method, METHODS)
