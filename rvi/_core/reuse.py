"""Reuse of repeated model queries inside one scoring pass.

Faithfulness scores share work: ``deletion``, ``deletion_gain`` and ``lerf_morf`` each compute the
deletion curve of the map's order, and every trivial explainer's ``deletion_gain`` draws the same
random-order curve, as its ``infidelity_unexplained`` the same logit changes. Inside
:func:`reuse_model_queries` a function wrapped with :func:`reused` returns its stored result when
called again with equal arguments: the same model object with parameters and buffers of equal
content, tensors of equal dtype, shape, device and bytes, and equal plain values. Outside it
nothing is stored and the wrapped function runs as written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from typing import Callable, Iterator, Optional

import torch
from torch import nn

_store: Optional[dict] = None


@contextlib.contextmanager
def reuse_model_queries() -> Iterator[None]:
    """Store the results of :func:`reused` functions until the outermost such block ends."""
    global _store
    outermost = _store is None
    if outermost:
        _store = {}
    try:
        yield
    finally:
        if outermost:
            _store = None


def reused(function: Callable) -> Callable:
    """``function`` (returning a tensor) answered from the store inside
    :func:`reuse_model_queries` when its arguments equal an earlier call's; each caller gets its
    own copy of the result."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if _store is None:
            return function(*args, **kwargs)
        key = (function.__qualname__, tuple(_key(a) for a in args),
               tuple(sorted((name, _key(value)) for name, value in kwargs.items())))
        if key not in _store:
            _store[key] = function(*args, **kwargs)
        return _store[key].clone()
    return wrapper


def _key(value):
    if isinstance(value, nn.Module):
        state = hashlib.blake2b(digest_size=16)
        for name, tensor in value.state_dict().items():
            state.update(name.encode())
            state.update(_digest(tensor).encode())
        return "module", id(value), state.hexdigest()
    if isinstance(value, torch.Tensor):
        return "tensor", str(value.dtype), tuple(value.shape), str(value.device), _digest(value)
    hash(value)  # a value that cannot be a key is a TypeError here, not a silent miss
    return "value", type(value).__name__, value


def _digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().contiguous().reshape(-1)
    return hashlib.blake2b(data.view(torch.uint8).numpy().tobytes(), digest_size=16).hexdigest()
