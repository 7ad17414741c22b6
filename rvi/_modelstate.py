"""Restore a model's train/eval mode and ``requires_grad`` flags, whatever happens inside."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: on exit, every module's ``training`` flag and every parameter's
    ``requires_grad`` are exactly as on entry, also when the body raises."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)


def model_device(model: nn.Module):
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    import torch

    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def check_model_labels(model: nn.Module, images, labels) -> int:
    """Raise ``ValueError`` unless every label indexes one of the model's outputs; returns the
    number of outputs (one eval-mode forward pass on the first image, state restored)."""
    import torch

    from ._checks import check_labels

    with preserved_state(model), torch.no_grad():
        model.eval()
        out = model(images[:1].to(model_device(model)))
    if out.ndim != 2:
        raise ValueError(f"model must return (N, num_classes) logits, got shape {tuple(out.shape)}")
    check_labels(labels, out.shape[1])
    return out.shape[1]
