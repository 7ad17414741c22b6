"""Why robust maps look cleaner: the first convolution's threshold channels, and how much of a
map's mass flows through them.

On near-binary digits the L-inf defence is to binarize the input: a first-layer filter whose one
tap carries its weight and whose bias sets a threshold passes a pixel only above that level.
:func:`threshold_channels` finds such channels from the weights (one dominant tap, a negative
bias, a threshold in (0, 1)) and, given images, checks their responses. :func:`channel_maps`
splits a map by first-layer channel: the method's backward pass is re-run with the gradient at
the first convolution's output kept on one channel at a time (Captum computes every map), so the
channel maps sum to the whole signed map wherever no ReLU precedes that convolution (rvi's
models, normalization layers included). :func:`mechanism_summary` gives the share of the map's
mass through threshold channels and the share of that mass on the digit.

A model without such channels (a natural LeNet, a ResNet's 3x3 stem on colour images) reads a
threshold share near 0; a model without a convolution is refused.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._core.checks import check_images, check_int
from .._core.modelstate import model_device, preserved_state
from ..attribution.saliency import explain
from .basic import FOREGROUND_THRESHOLD

#: A filter is a single-pixel filter when its largest tap holds at least this share of its
#: absolute weight (the criterion of ``benchmarks/recipe_sweep.py``'s switch-on levels)...
DOMINANT_SHARE = 0.9
#: ... and its absolute weight is at least this (not a dead filter).
MIN_WEIGHT = 0.3
#: With images, a threshold channel's response (pre-activation > 0) must agree with "the
#: dominant tap's pixel is above the threshold" at least this often.
RESPONSE_AGREEMENT = 0.95


def first_convolution(model: nn.Module) -> nn.Conv2d:
    """The first ``nn.Conv2d`` in ``model.modules()`` order (the layer the input meets first in
    rvi's models and in torchvision-style nets).

    Raises:
        ValueError: the model has no ``nn.Conv2d``.
    """
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"model {type(model).__name__} has no nn.Conv2d: the first-layer "
                         "mechanism analysis needs a convolution")
    return conv


def threshold_channels(model: nn.Module, images: Optional[torch.Tensor] = None) -> pd.DataFrame:
    """One row per output channel of the first convolution: ``channel``, ``dominant_share``
    (largest |tap| / sum of |taps|), ``weight`` (that tap), ``bias``, ``threshold`` (``-bias /
    weight``: the pixel value from which the channel passes, in [0, 1] pixel units; NaN without
    a bias or with a zero tap), ``agreement`` (with ``images`` (N, C, H, W) in [0, 1]: the share of
    positions where the channel's response is positive exactly when its dominant pixel is above
    the threshold; NaN without images) and ``is_threshold``.
    """
    conv = first_convolution(model)
    weights = conv.weight.detach().float().cpu().flatten(1)
    bias = conv.bias.detach().float().cpu() if conv.bias is not None else \
        torch.zeros(len(weights))
    mass = weights.abs().sum(1)
    tap = weights.abs().argmax(1)
    peak = weights.gather(1, tap.view(-1, 1)).squeeze(1)
    share = torch.where(mass > 0, peak.abs() / mass.clamp_min(1e-12), torch.zeros_like(mass))
    threshold = torch.where(peak != 0, -bias / peak, torch.full_like(peak, math.nan)) \
        if conv.bias is not None else torch.full_like(peak, math.nan)
    agreement = _agreement(model, conv, images, tap, threshold) if images is not None else \
        np.full(len(weights), np.nan)
    is_threshold = ((share >= DOMINANT_SHARE) & (mass >= MIN_WEIGHT) & (peak > 0)
                    & (threshold > 0) & (threshold < 1)).numpy()
    if images is not None:
        is_threshold &= agreement >= RESPONSE_AGREEMENT
    return pd.DataFrame({"channel": np.arange(len(weights)), "dominant_share": share.numpy(),
                         "weight": peak.numpy(), "bias": bias.numpy(),
                         "threshold": threshold.numpy(), "agreement": agreement,
                         "is_threshold": is_threshold})


def _agreement(model, conv, images, tap, threshold) -> np.ndarray:
    """Per channel: how often (pre-activation > 0) == (dominant pixel > threshold), over every
    output position of ``images`` (the conv's own input, captured by a hook)."""
    check_images(images)
    seen = {}
    handle = conv.register_forward_hook(
        lambda module, inputs, output: seen.update(x=inputs[0].detach(), z=output.detach()))
    try:
        with preserved_state(model), torch.no_grad():
            model.eval()
            model(images.to(model_device(model)))
    finally:
        handle.remove()
    patches = nn.functional.unfold(seen["x"].float().cpu(), conv.kernel_size, conv.dilation,
                                   conv.padding, conv.stride)  # (N, C*k*k, positions)
    response = seen["z"].float().cpu().flatten(2)  # (N, K, positions)
    out = np.empty(len(tap))
    for k in range(len(tap)):
        above = patches[:, int(tap[k])] > threshold[k]
        out[k] = float(((response[:, k] > 0) == above).float().mean())
    return out


@contextlib.contextmanager
def _only_channel(conv: nn.Conv2d, channel: int) -> Iterator[None]:
    """While active, the gradient reaching ``conv``'s output keeps only ``channel``."""
    def keep(module, inputs, output):
        if output.requires_grad:
            mask = torch.zeros(1, output.shape[1], 1, 1, dtype=output.dtype, device=output.device)
            mask[0, channel] = 1
            output.register_hook(lambda grad: grad * mask)

    handle = conv.register_forward_hook(keep)
    try:
        yield
    finally:
        handle.remove()


def channel_maps(model: nn.Module, images: torch.Tensor, target="true", *,
                 labels: Optional[torch.Tensor] = None, method: str = "guided_backprop",
                 batch_size: int = 256) -> torch.Tensor:
    """The signed map of ``method`` split by first-layer channel.

    Shape:
        images: (N, C, H, W) in [0, 1]. Returns (K, N, 1, H, W): channel k's part of the map
        (:func:`rvi.explain` with ``absolute=False``, channels summed), for the K output channels
        of the first convolution; the parts sum to the whole signed map.
    """
    check_images(images)
    check_int("batch_size", batch_size, 1)
    conv = first_convolution(model)
    parts = []
    for channel in range(conv.out_channels):
        with _only_channel(conv, channel):
            parts.append(explain(model, images, target, method, labels=labels, absolute=False,
                                 batch_size=batch_size).maps.cpu())
    return torch.stack(parts)


def mechanism_summary(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                      target="true", method: str = "guided_backprop",
                      batch_size: int = 256) -> dict:
    """How much of the map's mass flows through the first layer's threshold channels.

    Shape:
        images: (N, C, H, W) in [0, 1]; labels: (N,) int64.

    Returns:
        ``threshold_channels`` (their count), ``thresholds`` (sorted, 2 decimals),
        ``threshold_share`` (the share of the maps' absolute mass, summed over the channel
        parts and the images, through threshold channels; in [0, 1]) and ``foreground_share``
        (the share of that mass on stroke pixels, image > 0.5; NaN without threshold channels),
        and ``levels``: per first-layer channel, its threshold if it is a threshold channel, else
        None.
    """
    channels = threshold_channels(model, images)
    parts = channel_maps(model, images, target, labels=labels, method=method,
                         batch_size=batch_size).abs()  # (K, N, 1, H, W)
    through = parts[torch.tensor(channels["is_threshold"].tolist(), dtype=torch.bool)]
    stroke = (images.cpu().mean(1, keepdim=True) > FOREGROUND_THRESHOLD).to(parts.dtype)
    total, mass = float(parts.sum()), float(through.sum())
    return {"threshold_channels": int(channels["is_threshold"].sum()),
            "thresholds": sorted(round(float(t), 2) for t in
                                 channels.loc[channels["is_threshold"], "threshold"]),
            "threshold_share": mass / total if total > 0 else math.nan,
            "foreground_share": float((through * stroke).sum()) / mass if mass > 0 else math.nan,
            "levels": [float(level) if flag else None for level, flag in
                       zip(channels["threshold"], channels["is_threshold"])]}
