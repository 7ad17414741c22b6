"""Restore a model's train/eval mode and ``requires_grad`` flags, whatever happens inside; hold
a CPU model's weights in channels-last order while rvi runs it."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import nn

from ..errors import NonFiniteOutputError
from .checks import check_labels


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


#: Whether :func:`channels_last` with ``enabled=None`` converts CPU models that prefer it (what
#: rvi's attacks, attributions and metrics use); False gives the layout of rvi 0.3 and earlier,
#: for comparisons.
CPU_CHANNELS_LAST = True

#: The attribute :func:`prefer_channels_last` sets on a model.
PREFERS_CHANNELS_LAST = "rvi_prefers_channels_last"


def prefer_channels_last(model: nn.Module) -> nn.Module:
    """Mark ``model`` as one that rvi may hold in channels-last order on the CPU; returns it.

    rvi's builders mark the architectures whose speed-up ``benchmarks/speed.py`` measures (LeNet
    and the Madry CNN: 5x5 convolutions only). Nothing else is marked: oneDNN's channels-last
    kernels have crashed, hung or returned wrong gradients for some shapes on some CPUs (a 1x1
    convolution with stride 2 and fewer input channels than the kernel's block, torch 2.13-2.14;
    ``docs/usage.md``, "Speed on the CPU"), so a user's model keeps the layout it came with unless
    the user marks it, or puts its weights in channels-last order, themselves.
    """
    setattr(model, PREFERS_CHANNELS_LAST, True)
    return model


def wants_channels_last(model: nn.Module) -> bool:
    """Whether rvi runs ``model`` in channels-last order by default: it is on the CPU,
    :data:`CPU_CHANNELS_LAST` is set, and it was marked by :func:`prefer_channels_last`."""
    return (CPU_CHANNELS_LAST and getattr(model, PREFERS_CHANNELS_LAST, False)
            and model_device(model).type == "cpu")


def _weights_4d(model: nn.Module) -> list:
    """The model's 4-d parameters and buffers (convolution weights): what a layout changes."""
    return [w for w in list(model.parameters()) + list(model.buffers()) if w.ndim == 4]


def has_channels_last_weights(model: nn.Module) -> bool:
    """Whether some 4-d weight or buffer of ``model`` is in channels-last (not plain) order,
    i.e. the caller chose that layout."""
    return any(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
               for w in _weights_4d(model))


@contextlib.contextmanager
def channels_last(model: nn.Module, enabled: Optional[bool] = None) -> Iterator[nn.Module]:
    """Context manager: hold the model's 4-d weights in channels-last memory order for the body
    (``enabled`` None: when :func:`wants_channels_last`), and in the default order again
    afterwards, also when the body raises.

    oneDNN's convolutions then produce channels-last activations, which run faster on the CPU
    for small convolutions, above all a one-channel first layer (``benchmarks/speed.py``
    measures it). Only the order of the values in memory changes, and with it the order of
    float sums, not what is computed. Nothing is done when ``enabled`` is False, or when some
    4-d weight is already channels-last (the caller chose a layout).
    """
    if enabled is None:
        enabled = wants_channels_last(model)
    if not enabled or not _weights_4d(model) or has_channels_last_weights(model):
        yield model
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)


def model_device(model: nn.Module):
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def check_model_labels(model: nn.Module, images, labels) -> int:
    """Raise ``ValueError`` unless every label indexes one of the model's outputs; returns the
    number of outputs (one eval-mode forward pass on the first image, state restored)."""
    with preserved_state(model), torch.no_grad():
        model.eval()
        out = model(images[:1].to(model_device(model)))
    if out.ndim != 2:
        raise ValueError(f"model must return (N, num_classes) logits, got shape {tuple(out.shape)}")
    check_finite_logits(out, model)
    check_labels(labels, out.shape[1])
    return out.shape[1]


def check_finite_model(model: nn.Module, images: torch.Tensor, name: str) -> None:
    """One eval-mode forward pass of ``images`` without gradients (state restored), checked by
    :func:`check_finite_logits` under ``name``."""
    with preserved_state(model), torch.no_grad():
        model.eval()
        check_finite_logits(model(images.to(model_device(model))), model, name)


def check_finite_logits(logits: torch.Tensor, model: nn.Module, name: Optional[str] = None,
                        first: int = 0) -> None:
    """Raise :class:`~rvi.errors.NonFiniteOutputError` unless every entry of ``logits`` (n, K),
    the model's output for images ``first`` .. ``first + n - 1``, is finite. The message names
    the model: ``name``, else its class."""
    finite = torch.isfinite(logits.detach()).reshape(len(logits), -1).all(1)
    if bool(finite.all()):
        return
    bad = (~finite).nonzero().flatten()
    who = name if name is not None else f"model {type(model).__name__}"
    raise NonFiniteOutputError(
        f"{who} returns NaN or infinite logits for {len(bad)} of {len(logits)} images (first: "
        f"image {first + int(bad[0])}); rvi does not attack, explain or score such outputs "
        "(check the weights, e.g. a training run that diverged, and the input scaling)")
