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
