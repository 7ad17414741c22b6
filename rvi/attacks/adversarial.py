"""Adversarial examples, all made by torchattacks.

torchattacks switches the model to ``eval()`` and back without ``try/finally``, clamps to [0, 1]
silently, needs gradients enabled and draws PGD's random start from the global RNG. The functions
here check inputs first, restore the model's state in ``finally``, enable gradients, and take a
``seed`` so that random starts are repeatable without touching the caller's RNG stream.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torchattacks
from torch import nn

from .._core.checks import (check_images, check_int, check_model, derived_seed,  # noqa: F401 (re-exported)
                            optional_int, seeded)
from .._core.modelstate import channels_last, check_model_labels, model_device, preserved_state
from ..config import AttackConfig
from ..distributed import unwrap

#: AutoAttack always runs on consecutive chunks of this many images (the last may be shorter),
#: each with its own seed derived from ``(seed, chunk index)``, whatever ``batch_size`` is, so
#: its adversarial images do not depend on ``batch_size``.
AUTOATTACK_CHUNK = 250


def build_attack(model: nn.Module, config: AttackConfig, num_classes: int = 10, *,
                 seed: int = 0):
    """A torchattacks attack object for ``config`` (``PGD`` or ``PGDL2`` by ``config.norm``;
    ``FGSM``, or for L2 one ``PGDL2`` step of length eps without random start, the fast gradient
    method; ``AutoAttack``); the device is taken from the model.

    ``seed`` is AutoAttack's own seed (each of its sub-attacks calls
    ``torch.manual_seed(seed)`` on every call); FGSM and PGD ignore it (PGD's random start draws
    from the global RNG, which :func:`attack` seeds).
    """
    check_int("seed", seed, 0)
    if config.name == "fgsm" and config.norm == "Linf":
        return torchattacks.FGSM(model, eps=config.eps)
    if config.name == "fgsm":  # the L2 fast gradient method: one normalized step of length eps
        return torchattacks.PGDL2(model, eps=config.eps, alpha=config.eps, steps=1,
                                  random_start=False)
    if config.name == "autoattack":
        return torchattacks.AutoAttack(model, norm=config.norm, eps=config.eps,
                                       version="standard", n_classes=num_classes, seed=seed)
    pgd_class = torchattacks.PGD if config.norm == "Linf" else torchattacks.PGDL2
    pgd = [pgd_class(model, eps=config.eps, alpha=config.alpha, steps=config.steps,
                     random_start=config.random_start) for _ in range(config.restarts)]
    return pgd[0] if config.restarts == 1 else torchattacks.MultiAttack(pgd)


def autoattack_seed(seed: int, chunk: int) -> int:
    """The seed AutoAttack gets for chunk ``chunk`` (images ``chunk * AUTOATTACK_CHUNK`` on)."""
    return derived_seed(seed, chunk)


def skip_random_starts(config: AttackConfig, n_images: int, image_shape, device) -> None:
    """Advance the global RNG of ``device`` past the random starts that one PGD call on
    ``n_images`` images of ``image_shape`` (C, H, W) draws (nothing for FGSM or without random
    start), without attacking.

    PGD draws one uniform number per pixel, image after image, so on the CPU the images after the
    skipped ones get exactly the noise that one call on all of them would give them: this is how
    a data-parallel rank draws the same random starts as single-process training or evaluation.
    (With ``restarts > 1`` later restarts attack only the images still classified correctly, and
    CUDA's generator is not split this way: there the noise is seeded but not the same.)
    """
    check_int("n_images", n_images, 0)
    if config.name != "pgd" or not config.random_start or n_images == 0:
        return
    if config.norm != "Linf":  # PGDL2 draws a normal per pixel, then a uniform per image, per call
        raise ValueError(f"sharding {config.label} with a random start is not supported (its "
                         "random start is drawn per call, not per image); run it in one process")
    remaining = n_images * int(np.prod(image_shape))
    chunk = 1 << 22
    while remaining > 0:
        torch.empty(min(chunk, remaining), device=device).uniform_()
        remaining -= chunk


def attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig,
           *, batch_size: int = 500, seed: Optional[int] = 0, num_classes: int = 10,
           offset: int = 0) -> torch.Tensor:
    """Adversarial versions of ``images`` against ``model`` (white-box, untargeted, in the
    config's norm).

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
        offset: position of ``images[0]`` in a larger set attacked in parts (e.g. a rank's shard
            in :func:`rvi.evaluate` with ``distributed=True``): PGD random starts skip the noise
            of the ``offset`` images before (see :func:`skip_random_starts`) and AutoAttack's
            chunks are numbered from ``offset // AUTOATTACK_CHUNK``, which must then divide it.

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
    check_int("offset", offset, 0)
    if config.name == "autoattack" and offset % AUTOATTACK_CHUNK:
        raise ValueError(f"offset must be a multiple of {AUTOATTACK_CHUNK} for AutoAttack, "
                         f"got {offset}")
    model = unwrap(model)
    check_model_labels(model, images, labels)
    device = model_device(model)
    out = torch.empty_like(images)
    # AutoAttack's sub-attacks call torch.manual_seed themselves: always fork the RNG for them
    fork = 0 if seed is None and config.name == "autoattack" else seed
    numpy_state = np.random.get_state()
    try:
        with preserved_state(model), channels_last(model), torch.enable_grad(), \
                seeded(fork, device):
            if config.name == "autoattack":
                for chunk, start in enumerate(range(0, len(images), AUTOATTACK_CHUNK),
                                              offset // AUTOATTACK_CHUNK):
                    atk = build_attack(model, config, num_classes,
                                       seed=autoattack_seed(seed or 0, chunk))
                    _run(atk, images, labels, slice(start, start + AUTOATTACK_CHUNK), out, device)
            else:
                skip_random_starts(config, offset, images.shape[1:], device)
                atk = build_attack(model, config, num_classes)
                for start in range(0, len(images), batch_size):
                    _run(atk, images, labels, slice(start, start + batch_size), out, device)
    finally:
        np.random.set_state(numpy_state)
    return out


def shard_block(batch_size: int, configs: Sequence[AttackConfig]) -> int:
    """The image count a shard's bounds must be a multiple of for :func:`attack_part` to equal
    one call: ``batch_size`` (L2 and restarted PGD draw noise per batch), and AutoAttack's
    :data:`AUTOATTACK_CHUNK` as well when one of ``configs`` is AutoAttack."""
    autoattack = any(config.name == "autoattack" for config in configs)
    return math.lcm(batch_size, AUTOATTACK_CHUNK) if autoattack else batch_size


def attack_part(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, part: slice,
                config: AttackConfig, *, batch_size: int = 500, seed: Optional[int] = 0,
                num_classes: int = 10) -> torch.Tensor:
    """Adversarial versions of ``images[part]`` equal to those one :func:`attack` call on all
    ``images`` gives them: how a rank attacks its shard (:func:`rvi.evaluate` with
    ``distributed=True``, the benchmark pipeline). PGD random starts and AutoAttack chunks follow
    ``part.start``. Two random starts cannot be skipped without attacking the images before the
    part: PGD with ``restarts > 1`` (noise only for the images still classified correctly) and L2
    PGD (a normal per pixel, then a uniform per image, per batch); these attack
    ``images[:part.stop]`` and keep the part: exact when ``part.stop`` is a multiple of
    ``batch_size`` or the end, as shards are, but no faster than one process.

    Shape: images (N, C, H, W) in [0, 1], labels (N,); returns (len(images[part]), C, H, W).
    """
    if part.stop <= part.start:
        return images[part].clone()
    start = part.start
    if config.name == "pgd" and config.random_start and (config.restarts > 1
                                                         or config.norm != "Linf"):
        start = 0
    adversarial = attack(model, images[start:part.stop], labels[start:part.stop], config,
                         batch_size=batch_size, seed=seed, num_classes=num_classes, offset=start)
    return adversarial[part.start - start:]


def _run(atk, images: torch.Tensor, labels: torch.Tensor, part: slice, out: torch.Tensor,
         device) -> None:
    adv = atk(images[part].to(device), labels[part].to(device))
    out[part] = adv.detach().to(out.device)
