"""Saliency maps from Captum, one (1, H, W) map per image, computed in batches.

Every attribution is made by Captum (``GuidedBackprop``, ``Saliency``, ``IntegratedGradients``,
``NoiseTunnel`` over ``Saliency``); this module chooses the target, batches, reduces channels,
takes the absolute value, and guards against what Captum does not check:

- Guided Backprop only rewrites the backward pass of ``nn.ReLU`` *modules*. A model that calls
  ``F.relu``/``torch.relu``/``Tensor.relu`` or uses any other activation (GELU, SiLU, sigmoid, ...)
  silently gets plain gradients there, so :func:`explain` refuses such models (see
  :func:`check_guided_backprop_model`).
- Captum's hook clamps the gradient of the ReLU's *input tensor*. When that tensor is also used
  elsewhere (a residual/skip connection, or one tensor fed to two ReLUs), the clamp is applied to
  the summed gradient of all its uses, which is not Guided Backprop; such models are refused too.
  One ``nn.ReLU`` instance called several times on different tensors is fine (tested).
- ``GuidedBackprop.attribute`` warns "Setting backward hooks on ReLU activations..." on every
  call; exactly that message is filtered, nothing else. Inputs are handed to Captum already
  requiring gradients, so its "did not already require gradients" warning does not arise.
- Captum never calls ``eval()``. :func:`explain` puts the model in ``eval()`` for the call (maps
  must not depend on dropout or batch-norm batch statistics) and switches every parameter's
  ``requires_grad`` off (only input gradients are needed); both are restored afterwards, also on
  error.
- ``NoiseTunnel`` defaults to ``stdevs=1.0``, as large as the whole [0, 1] pixel range; here the
  noise is ``smoothgrad_noise`` times the pixel range (default 0.15, Smilkov et al. 2017), drawn
  from a seeded generator that leaves the caller's RNG stream untouched.

Each method is one :class:`rvi._core.registry.Method` in :data:`METHOD_REGISTRY`, registered at the end
of this module next to its Captum call: :func:`explain` asks that object for the call, the
images per call (:func:`images_per_call`), the settings it records and the pre-flight check.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Union

import torch
from captum.attr import GuidedBackprop, IntegratedGradients, NoiseTunnel, Saliency
from torch import nn

from .._core.checks import (check_bool, check_choice, check_images, check_int, check_model, check_positive,
                            chunks, seeded)
from .._core.modelstate import channels_last, check_finite_logits, model_device, preserved_state
from .._core.registry import METHOD_REGISTRY, Method
from ..distributed import unwrap
from .preflight import check_guided_backprop_model

TARGETS = ("true", "predicted")
#: The width of the pixel range the SmoothGrad noise is relative to (images live in [0, 1]).
PIXEL_RANGE = 1.0
#: :func:`explain`'s defaults: SmoothGrad's noise (a fraction of the pixel range) and noisy
#: copies per image, and Integrated Gradients' steps. The methods' expansions (model passes per
#: image in one Captum call) are these numbers.
SMOOTHGRAD_NOISE = 0.15
SMOOTHGRAD_SAMPLES = 50
IG_STEPS = 50


class Options(NamedTuple):
    """The settings of one :func:`explain` call that a method's Captum call reads.

    ``baseline``: (1 or n, C, H, W) float, Integrated Gradients' reference input (the images'
    own rows inside one Captum call); ``seed``: SmoothGrad's seed (None: the global RNG).
    """

    smoothgrad_noise: float = SMOOTHGRAD_NOISE
    smoothgrad_samples: int = SMOOTHGRAD_SAMPLES
    ig_steps: int = IG_STEPS
    baseline: Optional[torch.Tensor] = None
    seed: Optional[int] = 0


_GBP_WARNING = r"Setting backward hooks on ReLU activations\."
_GBP_WARNING_MODULE = r"captum\.attr\._core\.guided_backprop_deconvnet"


@dataclass(frozen=True, eq=False)
class Attribution:
    """Saliency maps and what produced them.

    Attributes:
        maps: (N, 1, H, W) float. With ``absolute`` the sum over channels of ``|attribution|``
            (non-negative), else the sum over channels of the signed attribution.
        target: (N,) int64, the class each map explains.
        target_kind: ``"true"`` (the labels given), ``"predicted"`` (the model's argmax in eval
            mode) or ``"given"`` (an explicit tensor).
        predicted: (N,) int64, the model's predictions on the images (eval mode).
        method: one of :data:`METHODS`.
        absolute: whether ``maps`` holds absolute values.
        settings: the method's own parameters (noise, samples, steps, baseline, seed).
    """

    maps: torch.Tensor
    target: torch.Tensor
    target_kind: str
    predicted: torch.Tensor
    method: str
    absolute: bool
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def zero_maps(self) -> torch.Tensor:
        """(N,) bool: maps that are exactly zero everywhere (Guided Backprop can return them)."""
        return ~self.maps.flatten(1).ne(0).any(1)

    @property
    def n_zero(self) -> int:
        """How many maps are exactly zero everywhere."""
        return int(self.zero_maps.sum())


def explain(model: nn.Module, x: torch.Tensor, target: Union[str, torch.Tensor] = "predicted",
            method: str = "guided_backprop", *, labels: Optional[torch.Tensor] = None,
            absolute: bool = True, batch_size: int = 256,
            smoothgrad_noise: float = SMOOTHGRAD_NOISE, smoothgrad_samples: int = SMOOTHGRAD_SAMPLES,
            ig_steps: int = IG_STEPS,
            baseline: Union[float, torch.Tensor] = 0.0, seed: Optional[int] = 0,
            offset: int = 0) -> Attribution:
    """Saliency maps of ``model`` for images ``x``, made by Captum.

    Shape:
        x: (N, C, H, W) float in [0, 1]; returned ``maps``: (N, 1, H, W) on ``x``'s device.

    Args:
        model: classifier mapping (N, C, H, W) images to (N, K) logits. It is put in ``eval()``
            and its parameters stop requiring gradients during the call; both are restored.
        x: the images.
        target: ``"true"`` (needs ``labels``), ``"predicted"`` (argmax of the model in eval
            mode), or an (N,) int64 tensor of classes in [0, K).
        method: ``"guided_backprop"`` (Captum ``GuidedBackprop``), ``"saliency"`` (plain
            gradient, Captum ``Saliency`` with ``abs=False``), ``"integrated_gradients"`` (Captum
            ``IntegratedGradients``, Gauss-Legendre rule) or ``"smoothgrad"`` (Captum
            ``NoiseTunnel`` averaging signed ``Saliency`` maps of noisy copies).
        labels: (N,) int64 true labels; required when ``target="true"``.
        absolute: reduce channels as ``sum_c |a_c|`` (True) or ``sum_c a_c`` (False). For
            SmoothGrad the absolute value is taken after averaging the signed gradients.
        batch_size: the most inputs the model sees in one pass. Integrated Gradients expands
            each image to ``ig_steps`` inputs and SmoothGrad to ``smoothgrad_samples``, so those
            methods take ``max(1, batch_size // steps)`` images per Captum call.
        smoothgrad_noise: SmoothGrad's Gaussian noise std as a fraction of the [0, 1] pixel
            range (Smilkov et al. 2017 recommend 0.1-0.2); Captum's default would be 1.0.
        smoothgrad_samples: noisy copies per image for SmoothGrad.
        ig_steps: integration steps for Integrated Gradients.
        baseline: Integrated Gradients' reference input: a float in [0, 1] (0.0, a black
            image, by default) or a tensor of shape (C, H, W), (1, C, H, W) or (N, C, H, W).
        seed: seeds SmoothGrad's noise without touching the caller's RNG stream (None: draw
            from the global RNG as it stands). Other methods are deterministic.
        offset: index of ``x[0]`` in a larger set explained in parts (a rank's shard): Captum
            calls take the images of one call on the whole set (the first may take fewer), and
            SmoothGrad first skips the noise that the ``offset`` images before would draw, so
            each image gets the map of one call on the whole set. For SmoothGrad it must be a
            multiple of the images per Captum call, ``max(1, batch_size // smoothgrad_samples)``.

    Returns:
        An :class:`Attribution` holding the maps, the target used and how it was chosen.

    Raises:
        ValueError: ``x`` is not a finite (N, C, H, W) float tensor in [0, 1]; ``method``,
            ``target``, ``labels`` or a numeric setting is invalid; the model's output is not
            (N, K); or ``method="guided_backprop"`` and the model has a nonlinearity Captum would
            not guide (see :func:`check_guided_backprop_model`).
        rvi.errors.NonFiniteOutputError: (a ``ValueError``) the model returns NaN or infinite
            logits for some image.

    Example:
        >>> import torch
        >>> from rvi.models.architectures import build_model
        >>> _ = torch.manual_seed(0)
        >>> result = explain(build_model("lenet"), torch.rand(2, 1, 28, 28), "predicted")
        >>> tuple(result.maps.shape), result.target_kind
        ((2, 1, 28, 28), 'predicted')
    """
    check_model(model)
    model = unwrap(model)  # Captum never sees a DistributedDataParallel wrapper
    check_images(x, name="x")
    check_choice("method", method, METHOD_REGISTRY.names())
    check_bool("absolute", absolute)
    check_int("batch_size", batch_size, 1)
    check_int("smoothgrad_samples", smoothgrad_samples, 1)
    check_int("ig_steps", ig_steps, 1)
    check_positive("smoothgrad_noise", smoothgrad_noise)
    if seed is not None:
        check_int("seed", seed, 0)
    check_int("offset", offset, 0)
    if labels is not None:
        check_images(x, labels, name="x")
    baseline = _check_baseline(baseline, x)

    spec = METHOD_REGISTRY[method]
    options = Options(smoothgrad_noise, smoothgrad_samples, ig_steps, baseline, seed)

    device = model_device(model)
    with preserved_state(model), channels_last(model):
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        predicted, num_classes = _predict(model, x, batch_size, device)
        target, kind = _resolve_target(target, labels, predicted, len(x), num_classes)
        if spec.preflight is not None:
            spec.preflight(model, x[:1].to(device))
        per_call = spec.images_per_call(batch_size, spec.expansion_for(options))
        pieces = []
        with torch.enable_grad(), seeded(seed if spec.random_draws else None, device):
            if spec.skip_draws is not None and offset:
                spec.skip_draws(offset, per_call, x.shape[1:], options, device)
            for part in chunks(len(x), per_call, offset):
                inputs = x[part].detach().to(device).clone().requires_grad_(True)
                base = baseline[part] if baseline.shape[0] > 1 else baseline
                attr = spec.attribute(model, inputs, target[part].to(device),
                                      options._replace(baseline=base.to(device)))
                pieces.append(attr.detach())
    attributions = torch.cat(pieces).contiguous()
    maps = attributions.abs().sum(1, keepdim=True) if absolute \
        else attributions.sum(1, keepdim=True)
    return Attribution(maps=maps.to(x.device), target=target.cpu(), target_kind=kind,
                       predicted=predicted, method=method, absolute=absolute,
                       settings=spec.settings(options))


def images_per_call(method: str, batch_size: int) -> int:
    """Images per Captum call of ``method`` in :func:`explain` with its default settings:
    ``max(1, batch_size // IG_STEPS)`` for ``integrated_gradients``, ``max(1, batch_size //
    SMOOTHGRAD_SAMPLES)`` for ``smoothgrad`` (both 50: 5 images of a 250 batch), ``batch_size``
    for the others. The shards of a sharded run are cut at these calls (SmoothGrad's noise is
    skipped by whole calls).

    Raises:
        ValueError: unknown ``method`` or a ``batch_size`` below 1.
    """
    check_choice("method", method, METHOD_REGISTRY.names())
    check_int("batch_size", batch_size, 1)
    return METHOD_REGISTRY[method].images_per_call(batch_size)


def _skip_smoothgrad_noise(offset: int, per_call: int, shape, options: Options, device) -> None:
    """Advance the global RNG past the noise that SmoothGrad draws for ``offset`` images before
    (whole Captum calls of ``per_call`` images, each drawing as ``NoiseTunnel`` does)."""
    if offset % per_call:
        raise ValueError(f"offset must be a multiple of {per_call} (images per SmoothGrad call) "
                         f"for SmoothGrad, got {offset}")
    std = torch.full((per_call * options.smoothgrad_samples, *shape),
                     float(options.smoothgrad_noise * PIXEL_RANGE), device=device)
    for _ in range(offset // per_call):
        torch.normal(0, std)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int, device) -> tuple:
    """(N,) int64 argmax predictions and the number of classes K (model already in eval)."""
    out = []
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size].to(device))
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) \
                else type(logits).__name__
            raise ValueError(f"model must return (N, K) logits, got {got}")
        check_finite_logits(logits, model, first=start)
        out.append(logits.argmax(1).cpu())
    return torch.cat(out), int(logits.shape[1])


def _resolve_target(target, labels: Optional[torch.Tensor], predicted: torch.Tensor, n: int,
                    num_classes: int) -> tuple:
    """The (N,) int64 target on CPU and its kind: "true", "predicted" or "given"."""
    if isinstance(target, str):
        if target == "predicted":
            return predicted.clone(), "predicted"
        if target == "true":
            if labels is None:
                raise ValueError("target='true' needs labels=(N,) int64 true labels; got None")
            chosen, kind = labels.detach().cpu().long(), "true"
        else:
            raise ValueError(f"target must be one of {', '.join(TARGETS)} or an (N,) int64 "
                             f"tensor; got {target!r}")
    elif isinstance(target, torch.Tensor):
        if target.dtype != torch.int64 or target.shape != (n,):
            raise ValueError(f"target must be an int64 tensor of shape ({n},), got "
                             f"{target.dtype} of shape {tuple(target.shape)}")
        chosen, kind = target.detach().cpu(), "given"
    else:
        raise ValueError(f"target must be one of {', '.join(TARGETS)} or an (N,) int64 tensor; "
                         f"got {target!r}")
    if n and (int(chosen.min()) < 0 or int(chosen.max()) >= num_classes):
        name = "labels" if kind == "true" else "target"
        raise ValueError(f"{name} must be classes in [0, {num_classes}), got values in "
                         f"[{int(chosen.min())}, {int(chosen.max())}]")
    return chosen, kind


def _check_baseline(baseline, x: torch.Tensor) -> torch.Tensor:
    """Integrated Gradients' baseline as a (1 or N, C, H, W) tensor."""
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        if not (math.isfinite(baseline) and 0.0 <= baseline <= 1.0):
            raise ValueError(f"baseline must be in [0, 1], got {baseline!r}")
        return torch.full((1,) + tuple(x.shape[1:]), float(baseline), dtype=x.dtype)
    if not isinstance(baseline, torch.Tensor) or not baseline.is_floating_point():
        raise ValueError(f"baseline must be a float in [0, 1] or a float tensor, got {baseline!r}")
    base = baseline.detach()
    if base.shape == x.shape[1:]:
        base = base.unsqueeze(0)
    if base.ndim != 4 or base.shape[1:] != x.shape[1:] or base.shape[0] not in (1, len(x)):
        raise ValueError(f"baseline must have shape {tuple(x.shape[1:])}, (1, ...) or "
                         f"{tuple(x.shape)}, got {tuple(baseline.shape)}")
    if not torch.isfinite(base).all():
        raise ValueError("baseline must be finite, got NaN or infinite values")
    return base.to(x.dtype).cpu()


def _describe_baseline(baseline: torch.Tensor):
    values = baseline.unique()
    return float(values[0]) if values.numel() == 1 else "tensor"


# --- the methods: one Captum call and one registered object each -------------------------------

def _guided_backprop(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                     options: Options) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_GBP_WARNING, category=UserWarning,
                                module=_GBP_WARNING_MODULE)
        return GuidedBackprop(model).attribute(inputs, target=target)


METHOD_REGISTRY.register(Method(
    "guided_backprop", "GuidedBackprop(model).attribute(x, target=t)", _guided_backprop,
    "Guided Backprop (Springenberg et al. 2015): only positive gradients pass each ReLU",
    preflight=check_guided_backprop_model))


def _saliency(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
              options: Options) -> torch.Tensor:
    return Saliency(model).attribute(inputs, target=target, abs=False)


METHOD_REGISTRY.register(Method(
    "saliency", "Saliency(model).attribute(x, target=t, abs=False)", _saliency,
    "the plain gradient of the target logit (Simonyan et al. 2014)"))


def _integrated_gradients(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                          options: Options) -> torch.Tensor:
    return IntegratedGradients(model).attribute(inputs, baselines=options.baseline, target=target,
                                                n_steps=options.ig_steps, method="gausslegendre")


def _integrated_gradients_settings(options: Options) -> dict:
    return {"ig_steps": options.ig_steps, "baseline": _describe_baseline(options.baseline)}


METHOD_REGISTRY.register(Method(
    "integrated_gradients",
    "IntegratedGradients(model).attribute(x, baselines=b, target=t, n_steps=ig_steps, "
    "method='gausslegendre')", _integrated_gradients,
    "Integrated Gradients (Sundararajan et al. 2017) from a baseline image, Gauss-Legendre rule",
    expansion=IG_STEPS, expansion_option="ig_steps", settings=_integrated_gradients_settings))


def _smoothgrad(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                options: Options) -> torch.Tensor:
    return NoiseTunnel(Saliency(model)).attribute(
        inputs, nt_type="smoothgrad", nt_samples=options.smoothgrad_samples,
        stdevs=float(options.smoothgrad_noise * PIXEL_RANGE), target=target, abs=False)


def _smoothgrad_settings(options: Options) -> dict:
    return {"smoothgrad_noise": float(options.smoothgrad_noise),
            "smoothgrad_samples": options.smoothgrad_samples, "seed": options.seed}


METHOD_REGISTRY.register(Method(
    "smoothgrad",
    "NoiseTunnel(Saliency(model)).attribute(x, nt_type='smoothgrad', nt_samples=smoothgrad_samples, "
    "stdevs=smoothgrad_noise, target=t, abs=False)", _smoothgrad,
    "SmoothGrad (Smilkov et al. 2017): signed gradients averaged over noisy copies",
    random_draws=True, expansion=SMOOTHGRAD_SAMPLES, expansion_option="smoothgrad_samples",
    settings=_smoothgrad_settings, skip_draws=_skip_smoothgrad_noise))

#: The names of the attribution methods of :func:`explain`, in registration order.
METHODS = METHOD_REGISTRY.names()
