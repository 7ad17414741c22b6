"""Clean and robust accuracy, batched, on a whole test set or a stated subset."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .. import distributed as ddp
from .._core.checks import check_images, check_int, check_model, optional_int
from .._core.modelstate import (channels_last, check_finite_logits, check_model_labels, model_device,
                                preserved_state)
from ..config import AttackConfig
from .adversarial import attack_part, shard_block


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels (N,) int64 for (N, C, H, W) images, in eval mode (restored after)."""
    return _per_batch(model, images, batch_size, lambda logits, part: logits.argmax(1))


def class_probability(model: nn.Module, images: torch.Tensor, classes: torch.Tensor,
                      batch_size: int = 1000) -> torch.Tensor:
    """(N,) float: the softmax probability of ``classes`` (N,) int64 for (N, C, H, W) images, in
    eval mode (restored after); e.g. where a deletion curve of the class a map explains starts."""
    check_images(images, classes)
    return _per_batch(model, images, batch_size, lambda logits, part: logits.softmax(1).gather(
        1, classes[part].to(logits.device).view(-1, 1)).squeeze(1))


@torch.no_grad()
def _per_batch(model: nn.Module, images: torch.Tensor, batch_size: int, reduce) -> torch.Tensor:
    """``reduce(logits, part)`` of each batch ``images[part]``, on the CPU, concatenated: the
    model in eval mode (restored after), without gradients.

    Raises:
        rvi.errors.NonFiniteOutputError: the model returns NaN or infinite logits.
    """
    check_model(model)
    check_images(images)
    check_int("batch_size", batch_size, 1)
    model = ddp.unwrap(model)
    device = model_device(model)
    with preserved_state(model), channels_last(model):
        model.eval()
        out = []
        for start in range(0, len(images), batch_size):
            logits = model(images[start:start + batch_size].to(device))
            check_finite_logits(logits, model, first=start)
            out.append(reduce(logits, slice(start, start + batch_size)).cpu())
        return torch.cat(out)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             attacks: Sequence[AttackConfig] = (), *, n: Optional[int] = None,
             batch_size: int = 500, seed: int = 0, distributed: bool = False) -> dict:
    """Accuracy on clean images and under each attack (white-box against ``model``).

    Args:
        images: (N, C, H, W) float in [0, 1]; labels: (N,) int64.
        attacks: attack settings; each adds an entry keyed by its ``label``.
        n: evaluate on the first ``n`` images only (None: all).
        seed: seeds PGD random starts.
        distributed: every rank of the process group calls with the same arguments and attacks
            its contiguous shard of the images (whole batches; see
            :func:`rvi.distributed.shard`); the counts are summed over ranks, so every rank gets
            the result of single-process evaluation (on the CPU the same PGD noise per image).
            In a group of one process it evaluates everything here; without any process group
            ``True`` is a ``ValueError``.

    Returns:
        ``{"n": images used, "clean": accuracy in [0, 1], "<attack label>": accuracy, ...}``.

    Raises:
        rvi.errors.NonFiniteOutputError: (a ``ValueError``) the model returns NaN or infinite
            logits, on clean or attacked images.
    """
    check_model(model)
    model = ddp.unwrap(model)
    sync = ddp.active(distributed)
    check_images(images, labels)
    optional_int(n, "n")
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed, 0)
    if isinstance(attacks, str):
        raise ValueError(f"attacks must be a sequence of AttackConfig, got {attacks!r}")
    attacks = list(attacks) if not isinstance(attacks, AttackConfig) else [attacks]
    labels_seen: dict = {}
    for i, config in enumerate(attacks):
        if not isinstance(config, AttackConfig):
            raise ValueError(f"attacks entry {i} must be an AttackConfig, got {config!r}")
        if config.label in labels_seen:
            raise ValueError(f"attacks entries {labels_seen.get(config.label)} and {i} make the same "
                             f"attack ({config.label!r}); give each attack once")
        labels_seen[config.label] = i
    check_model_labels(model, images, labels)
    if n is not None:
        if n > len(images):
            raise ValueError(f"n must be at most the {len(images)} images given, got {n}")
        images, labels = images[:n], labels[:n]
    total = len(images)
    part = slice(0, total)
    if sync:
        part = ddp.shard(total, align=shard_block(batch_size, attacks))
    counts = [count_correct(model, images[part], labels[part], batch_size)]
    for config in attacks:  # a rank's shard may be empty: attack_part returns it empty
        adversarial = attack_part(model, images, labels, part, config, batch_size=batch_size,
                                  seed=seed)
        counts.append(count_correct(model, adversarial, labels[part], batch_size))
    if sync:
        counts = ddp.all_sum(counts)
    # float32 count / n is what the mean of the (N,) float32 correctness vector gives
    accuracies = [float(torch.tensor(float(c)) / total) for c in counts]
    return {"n": total, "clean": accuracies[0],
            **{config.label: acc for config, acc in zip(attacks, accuracies[1:])}}


def count_correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  batch_size: int = 1000) -> int:
    """How many of ``images`` ``model`` classifies as ``labels`` (0 for no images): the one
    place rvi counts correct predictions (:func:`evaluate`, the studies' accuracy rows)."""
    if not len(images):
        return 0
    return int((predict(model, images, batch_size) == labels.cpu()).sum())
