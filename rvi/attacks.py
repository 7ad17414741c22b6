"""Adversarial examples, all made by torchattacks.

torchattacks switches the model to ``eval()`` and back without ``try/finally``, clamps to [0, 1]
silently, needs gradients enabled and draws PGD's random start from the global RNG. The functions
here check inputs first, restore the model's state in ``finally``, enable gradients, and take a
``seed`` so that random starts are repeatable without touching the caller's RNG stream.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import numpy as np
import torch
import torchattacks
from torch import nn

from ._modelstate import model_device, preserved_state
from .config import AttackConfig, check_int

#: AutoAttack always runs on consecutive chunks of this many images (the last may be shorter),
#: each with its own seed derived from ``(seed, chunk index)``, whatever ``batch_size`` is, so
#: its adversarial images do not depend on ``batch_size``.
AUTOATTACK_CHUNK = 250


def check_images(images: torch.Tensor, labels: Optional[torch.Tensor] = None,
                 name: str = "images") -> None:
    """Raise ``ValueError`` unless ``images`` is a finite (N, C, H, W) float tensor in [0, 1]
    and ``labels`` (if given) is an (N,) integer tensor."""
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


def build_attack(model: nn.Module, config: AttackConfig, num_classes: int = 10, *,
                 seed: int = 0):
    """A torchattacks attack object for ``config``; the device is taken from the model.

    ``seed`` is AutoAttack's own seed (each of its sub-attacks calls
    ``torch.manual_seed(seed)`` on every call); FGSM and PGD ignore it (PGD's random start draws
    from the global RNG, which :func:`attack` seeds).
    """
    check_int("seed", seed, 0)
    if config.name == "fgsm":
        return torchattacks.FGSM(model, eps=config.eps)
    if config.name == "autoattack":
        return torchattacks.AutoAttack(model, norm="Linf", eps=config.eps, version="standard",
                                       n_classes=num_classes, seed=seed)
    pgd = [torchattacks.PGD(model, eps=config.eps, alpha=config.alpha, steps=config.steps,
                            random_start=config.random_start) for _ in range(config.restarts)]
    return pgd[0] if config.restarts == 1 else torchattacks.MultiAttack(pgd)


def autoattack_seed(seed: int, chunk: int) -> int:
    """The seed AutoAttack gets for chunk ``chunk`` (images ``chunk * AUTOATTACK_CHUNK`` on)."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1, dtype=np.uint32)[0])


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


def attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig,
           *, batch_size: int = 500, seed: Optional[int] = 0, num_classes: int = 10
           ) -> torch.Tensor:
    """Adversarial versions of ``images`` against ``model`` (white-box, untargeted, L-inf).

    Args:
        model: classifier taking [0, 1] images.
        images: (N, C, H, W) float in [0, 1].
        labels: (N,) int64 true labels.
        config: which attack and its budget.
        batch_size: images per torchattacks call for FGSM and PGD. AutoAttack ignores it and
            runs on chunks of :data:`AUTOATTACK_CHUNK` images, chunk ``i`` with seed
            :func:`autoattack_seed` ``(seed, i)``, so its result does not depend on it.
        seed: seeds PGD's random start and AutoAttack (None: PGD uses the global RNG as it
            stands, AutoAttack uses seed 0). The caller's torch and NumPy RNG states are left as
            they were.

    Returns:
        (N, C, H, W) float in [0, 1] on the images' device, with ``|x_adv - x| <= eps``.
    """
    check_images(images, labels)
    check_int("batch_size", batch_size, 1)
    if seed is not None:
        check_int("seed", seed, 0)
    device = model_device(model)
    out = torch.empty_like(images)
    # AutoAttack's sub-attacks call torch.manual_seed themselves: always fork the RNG for them
    fork = 0 if seed is None and config.name == "autoattack" else seed
    numpy_state = np.random.get_state()
    try:
        with preserved_state(model), torch.enable_grad(), seeded(fork, device):
            if config.name == "autoattack":
                for chunk, start in enumerate(range(0, len(images), AUTOATTACK_CHUNK)):
                    atk = build_attack(model, config, num_classes,
                                       seed=autoattack_seed(seed or 0, chunk))
                    _run(atk, images, labels, slice(start, start + AUTOATTACK_CHUNK), out, device)
            else:
                atk = build_attack(model, config, num_classes)
                for start in range(0, len(images), batch_size):
                    _run(atk, images, labels, slice(start, start + batch_size), out, device)
    finally:
        np.random.set_state(numpy_state)
    return out


def _run(atk, images: torch.Tensor, labels: torch.Tensor, part: slice, out: torch.Tensor,
         device) -> None:
    adv = atk(images[part].to(device), labels[part].to(device))
    out[part] = adv.detach().to(out.device)
