"""Adversarial examples, all made by torchattacks.

torchattacks switches the model to ``eval()`` and back without ``try/finally``, clamps to [0, 1]
silently, needs gradients enabled and draws PGD's random start from the global RNG. The functions
here check inputs first, restore the model's state in ``finally``, enable gradients, and take a
``seed`` so that random starts are repeatable without touching the caller's RNG stream.
"""

from __future__ import annotations

from typing import Optional

import torch
import torchattacks
from torch import nn

from ._checks import (check_images, check_int, check_model, optional_int,  # noqa: F401 (re-exported)
                      seeded)
from ._modelstate import check_model_labels, model_device, preserved_state
from .config import AttackConfig


def build_attack(model: nn.Module, config: AttackConfig, num_classes: int = 10):
    """A torchattacks attack object for ``config``; the device is taken from the model."""
    if config.name == "fgsm":
        return torchattacks.FGSM(model, eps=config.eps)
    if config.name == "autoattack":
        return torchattacks.AutoAttack(model, norm="Linf", eps=config.eps, version="standard",
                                       n_classes=num_classes, seed=0)
    pgd = [torchattacks.PGD(model, eps=config.eps, alpha=config.alpha, steps=config.steps,
                            random_start=config.random_start) for _ in range(config.restarts)]
    return pgd[0] if config.restarts == 1 else torchattacks.MultiAttack(pgd)


def attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig,
           *, batch_size: int = 500, seed: Optional[int] = 0, num_classes: int = 10
           ) -> torch.Tensor:
    """Adversarial versions of ``images`` against ``model`` (white-box, untargeted, L-inf).

    Args:
        model: classifier taking [0, 1] images.
        images: (N, C, H, W) float in [0, 1].
        labels: (N,) int64 true labels.
        config: which attack and its budget.
        batch_size: images per torchattacks call.
        seed: seeds PGD's random start (None: use the global RNG as it stands).

    Returns:
        (N, C, H, W) float in [0, 1] on the images' device, with ``|x_adv - x| <= eps``.
    """
    check_model(model)
    if not isinstance(config, AttackConfig):
        raise ValueError(f"config must be an AttackConfig, got {config!r}")
    check_images(images, labels)
    check_int("batch_size", batch_size, 1)
    optional_int(seed, "seed", 0)
    check_int("num_classes", num_classes, 2)
    check_model_labels(model, images, labels)
    device = model_device(model)
    out = torch.empty_like(images)
    with preserved_state(model), torch.enable_grad(), seeded(seed, device):
        atk = build_attack(model, config, num_classes)
        for start in range(0, len(images), batch_size):
            batch = slice(start, start + batch_size)
            adv = atk(images[batch].to(device), labels[batch].to(device))
            out[batch] = adv.detach().to(out.device)
    return out
