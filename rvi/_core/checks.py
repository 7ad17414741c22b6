"""Argument and tensor checks, and the seeded-RNG context manager.

A leaf module: it imports nothing from rvi but its exception classes, so config, data, models,
attacks, saliency, metrics and controls can all use it without import circles. Every check
raises ``ValueError`` naming the argument, the value and what was expected. The names it checks
against are in :mod:`rvi._core.catalog`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
from typing import Optional

import numpy as np
import torch

from ..errors import MissingPackageError


def installed(distribution: str) -> bool:
    """Whether the distribution ``distribution`` (its name on PyPI) is installed, read from its
    metadata (``importlib.metadata``). A module name proves nothing: torchattacks 3.5.1's wheel ships
    a folder named ``robustbench``, so ``import robustbench`` can work without RobustBench."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def require_installed(distribution: str, extra: str, user: str) -> None:
    """Raise :class:`~rvi.errors.MissingPackageError` (an ``ImportError``) naming ``pip install
    "rvi[extra]"`` unless ``distribution`` is installed (:func:`installed`); ``user`` (plural)
    names what needs it."""
    if not installed(distribution):
        raise MissingPackageError(f'{user} need the {distribution} package, which is not '
                                  f'installed: pip install "rvi[{extra}]"')


def check_range(name: str, value: float, low: float, high: float, *, low_open: bool = True) -> None:
    """Raise ``ValueError`` unless ``value`` is a real number in ``(low, high]`` (``[low, high]``
    with ``low_open=False``)."""
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
    if not bad:
        bad = not (value > low if low_open else value >= low) or value > high
    if bad:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")


def check_int(name: str, value: int, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an ``int`` (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def optional_int(value: Optional[int], name: str, minimum: int = 1) -> Optional[int]:
    """Check an optional integer argument (``None`` means "all")."""
    if value is not None:
        check_int(name, value, minimum)
    return value


def check_bool(name: str, value: bool) -> None:
    """Raise ``ValueError`` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_choice(name: str, value: str, choices: tuple) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    try:
        ok = value in choices
    except TypeError:  # unhashable values against a dict of choices
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def check_model(model, name: str = "model") -> None:
    """Raise ``ValueError`` unless ``model`` is a ``torch.nn.Module``."""
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")


def check_path(name: str, value, *, optional: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a path (``str`` or ``os.PathLike``; or None)."""
    if optional and value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or value == "":
        expected = "a file or folder path" + (" or None" if optional else "")
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_images(images: torch.Tensor, labels: Optional[torch.Tensor] = None,
                 name: str = "images", *, num_classes: Optional[int] = None) -> None:
    """Raise ``ValueError`` unless ``images`` is a finite (N, C, H, W) float tensor in [0, 1]
    and ``labels`` (if given) is an (N,) integer tensor, in ``[0, num_classes)`` if that is given."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a float tensor of shape (N, C, H, W), got {shape}")
    if images.numel() == 0:
        raise ValueError(f"{name} must hold at least one image, got shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name} must be in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32) \
                or labels.shape != images.shape[:1]:
            got = (tuple(labels.shape), labels.dtype) if isinstance(labels, torch.Tensor) else labels
            raise ValueError(f"labels must be an int64 tensor of shape ({len(images)},), got {got}")
        if num_classes is not None:
            check_labels(labels, num_classes)


def check_labels(labels: torch.Tensor, num_classes: int, name: str = "labels") -> None:
    """Raise ``ValueError`` unless every entry of the integer tensor ``labels`` is in
    ``[0, num_classes)``."""
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{name} must be in [0, {num_classes}), got values in [{low}, {high}]")


def describe(value) -> str:
    """A tensor as ``dtype of shape (...)``, anything else as its ``repr``."""
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    return repr(value)


def check_map(saliency, name: str = "saliency") -> torch.Tensor:
    """Return ``saliency`` after checking it is a finite (N, C, H, W) float tensor."""
    if not isinstance(saliency, torch.Tensor) or saliency.ndim != 4 \
            or not saliency.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of shape (N, C, H, W), got "
                         f"{describe(saliency)}")
    if not torch.isfinite(saliency).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    return saliency


def check_scored_image(image, name: str = "image") -> torch.Tensor:
    """Return ``image`` after checking it is a finite, non-negative (N, C, H, W) float tensor
    (the images a metric compares maps with; unlike :func:`check_images`, no upper bound)."""
    check_map(image, name)
    if len(image) and float(image.min()) < 0:
        raise ValueError(f"{name} must be non-negative, got a minimum of {float(image.min()):.4g}")
    return image


def check_map_pair(saliency, image) -> tuple:
    """Checked ``(map, image)``, the image cast to the map's dtype and reduced to its channel
    mean when the map has one channel.

    Shape:
        saliency: (N, 1 or C, H, W); image: (N, C, H, W). Returns both as (N, 1 or C, H, W).
    """
    check_map(saliency)
    check_scored_image(image)
    if saliency.shape != image.shape:
        if saliency.shape[1] == 1 and saliency.shape[:1] + saliency.shape[2:] \
                == image.shape[:1] + image.shape[2:]:
            image = image.mean(1, keepdim=True)
        else:
            raise ValueError(f"saliency and image must have matching shapes (N, 1 or C, H, W), "
                             f"got {tuple(saliency.shape)} and {tuple(image.shape)}")
    return saliency, image.to(saliency.dtype)


def check_positive(name: str, value) -> None:
    """``value`` must be a positive finite number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def check_maps_like(maps, images: Optional[torch.Tensor] = None) -> None:
    """``maps`` must be a finite (N, C, H, W) float tensor, shaped (N, 1 or C, H, W) like
    ``images`` when given."""
    if not isinstance(maps, torch.Tensor) or maps.ndim != 4 or not maps.is_floating_point():
        got = f"{maps.dtype} of shape {tuple(maps.shape)}" if isinstance(maps, torch.Tensor) \
            else repr(maps)
        raise ValueError(f"maps must be a float tensor of shape (N, C, H, W), got {got}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps must be finite, got NaN or infinite values")
    if images is not None:
        n, c, h, w = images.shape
        if maps.shape not in ((n, 1, h, w), (n, c, h, w)):
            raise ValueError(f"maps must have shape ({n}, 1 or {c}, {h}, {w}) to match the "
                             f"images, got {tuple(maps.shape)}")


def check_logits(logits, n: int) -> int:
    """``logits`` must be (n, K); returns K."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != n:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"model must return ({n}, K) logits, got {got}")
    return int(logits.shape[1])


def check_targets(targets, n: int, num_classes: int) -> None:
    """``targets`` must be (n,) int64 classes in [0, num_classes)."""
    if not isinstance(targets, torch.Tensor) or targets.dtype != torch.int64 \
            or targets.shape != (n,):
        got = f"{targets.dtype} of shape {tuple(targets.shape)}" \
            if isinstance(targets, torch.Tensor) else repr(targets)
        raise ValueError(f"targets must be an int64 tensor of shape ({n},), got {got}")
    if n and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise ValueError(f"targets must be classes in [0, {num_classes}), got values in "
                         f"[{int(targets.min())}, {int(targets.max())}]")


def chunks(n: int, size: int, offset: int = 0):
    """Slices of ``range(n)`` of at most ``size`` items, cut where ``offset + i`` is a multiple
    of ``size``: a part of a larger set that starts at item ``offset`` is cut into the batches
    of one call on the whole set (``offset=0``: plain batches of ``size``)."""
    start = 0
    while start < n:
        stop = min(n, start + size - (offset + start) % size)
        yield slice(start, stop)
        start = stop


def derived_seed(seed: int, index: int) -> int:
    """A 32-bit seed for part ``index`` (an image, a chunk) of a run seeded with ``seed``: the
    first word of NumPy's ``SeedSequence([seed, index])``, so parts get independent streams."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint32)[0])


@contextlib.contextmanager
def seeded(seed: Optional[int], device: torch.device):
    """Run the body with the global torch RNG seeded, restoring the caller's RNG afterwards."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
