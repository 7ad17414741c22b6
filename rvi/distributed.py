"""Data parallelism with ``torch.distributed``: process group, rank helpers, sharding, gathering.

Launch with ``torchrun --nproc_per_node=N -m rvi train ...`` (or call :func:`init` in a process
that torchrun started). Every helper here also works without a process group: it then behaves
as a world of one process (rank 0, every shard is everything, gathering returns the input).

The backend is ``nccl`` when CUDA is available and ``gloo`` otherwise; pass ``backend`` to
choose. torchattacks and Captum must see the plain module, never the
:class:`~torch.nn.parallel.DistributedDataParallel` wrapper (a PGD step through the wrapper
would prepare gradient synchronization that the attack never completes): :func:`unwrap`.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any, Callable, Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ._core.checks import check_int

BACKENDS = ("gloo", "nccl")


def default_backend() -> str:
    """``"nccl"`` when CUDA and NCCL are available, else ``"gloo"``."""
    if torch.cuda.is_available() and dist.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def check_backend(backend: Optional[str]) -> str:
    """The backend to use: ``backend`` checked, or :func:`default_backend` for None/``"auto"``."""
    if backend is None or backend == "auto":
        return default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be gloo or nccl, got {backend!r}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend 'nccl' needs CUDA GPUs, and none is available; use 'gloo'")
    return backend


def launched() -> bool:
    """Whether this process was started by torchrun (``WORLD_SIZE`` and ``RANK`` are set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def is_initialized() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """Whether a process group of two or more processes exists."""
    return is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0 (the process that writes files and prints)."""
    return rank() == 0


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``; 0 if unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def device() -> torch.device:
    """The device this rank should train on: ``cuda:LOCAL_RANK`` under ``nccl``, else the CPU."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def init(backend: Optional[str] = None, *, timeout_s: Optional[float] = None) -> bool:
    """Join the process group torchrun set up (``env://``), if this process was launched by it.

    Args:
        backend: ``"gloo"``, ``"nccl"``, or None/``"auto"`` (:func:`default_backend`).
        timeout_s: collective timeout in seconds (None: torch's default).

    Returns:
        True if this call created the process group (call :func:`close` at the end); False if
        one existed already or the process was not launched by torchrun.

    Raises:
        ValueError: an unknown backend, or ``nccl`` without CUDA.
    """
    backend = check_backend(backend)
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or timeout_s <= 0):
        raise ValueError(f"timeout_s must be a positive number or None, got {timeout_s!r}")
    if is_initialized() or not launched():
        return False
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    kwargs = {} if timeout_s is None else {"timeout": timedelta(seconds=timeout_s)}
    dist.init_process_group(backend=backend, **kwargs)
    return True


def close() -> None:
    """Destroy the default process group, if there is one."""
    if is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(backend: Optional[str] = None) -> Iterator[bool]:
    """Context manager: :func:`init` on entry, :func:`close` on exit if it created the group.
    Yields :func:`is_distributed`."""
    created = init(backend)
    try:
        yield is_distributed()
    finally:
        if created:
            close()


def active(distributed: Optional[bool]) -> bool:
    """Resolve a ``distributed`` argument: None means "if in a process group of 2+ processes";
    True requires an initialized process group; False means this process works alone."""
    if distributed is None:
        return is_distributed()
    if distributed is not True and distributed is not False:
        raise ValueError(f"distributed must be True, False or None, got {distributed!r}")
    if distributed and not is_initialized():
        raise ValueError("distributed=True needs an initialized process group (launch with "
                         "torchrun and call rvi.distributed.init()), but there is none")
    return distributed and is_distributed()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper;
    ``model`` itself otherwise. Give attacks and attributions this, never the wrapper."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def shard(n: int, *, align: int = 1, rank: Optional[int] = None,
          world_size: Optional[int] = None) -> slice:
    """This rank's contiguous part of ``n`` items, e.g. ``images[shard(len(images))]``.

    Items are dealt in blocks of ``align`` (the last block may be shorter), as evenly as possible:
    lower ranks get at most one block more. Concatenating the parts of ranks 0, 1, ... gives
    ``range(n)`` in order, so per-rank results concatenated in rank order are in the original
    order. A rank may get an empty part when there are fewer blocks than ranks.

    Args:
        n: number of items (>= 0).
        align: block size; shard boundaries are multiples of it (e.g. an attack's batch size).
        rank: defaults to this process's (0 without a process group).
        world_size: defaults to this process group's (1 without one).
    """
    check_int("n", n, 0)
    check_int("align", align, 1)
    if world_size is None:
        world_size = dist.get_world_size() if is_initialized() else 1
    check_int("world_size", world_size, 1)
    if rank is None:
        rank = dist.get_rank() if is_initialized() else 0
    check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be below world_size {world_size}, got {rank}")
    blocks = -(-n // align)
    base, extra = divmod(blocks, world_size)
    first = rank * base + min(rank, extra)
    count = base + (1 if rank < extra else 0)
    return slice(min(n, first * align), min(n, (first + count) * align))


def _collective_device() -> torch.device:
    return device() if is_initialized() else torch.device("cpu")


def all_sum(values: Sequence[float]) -> List[float]:
    """Element-wise sum of ``values`` over all ranks (float64), returned on every rank."""
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64,
                          device=_collective_device())
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_records(records: list, dst: int = 0) -> Optional[list]:
    """Concatenate every rank's list of (picklable) records on rank ``dst`` in rank order.

    With :func:`shard`'s contiguous parts, the result is in the order of the unsharded items.

    Returns:
        On rank ``dst``, the concatenated list; None on the other ranks. Without a process
        group, ``list(records)``.
    """
    if not isinstance(records, list):
        raise ValueError(f"records must be a list, got {type(records).__name__}")
    if not is_distributed():
        return list(records)
    parts = [None] * dist.get_world_size() if rank() == dst else None
    dist.gather_object(records, parts, dst=dst)
    if rank() != dst:
        return None
    return [record for part in parts for record in part]


def on_main(fn: Callable[..., Any], *args, **kwargs) -> Any:
    """Run ``fn(*args, **kwargs)`` on rank 0 only (e.g. writing a file) while the other ranks
    wait; when it raises on rank 0, every rank raises (a ``RuntimeError`` naming the error on
    the others), so no rank is left waiting. Returns ``fn``'s result on rank 0, None elsewhere.
    Without a process group it just calls ``fn``."""
    if not is_distributed():
        return fn(*args, **kwargs)
    result, error = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except BaseException as err:  # noqa: B902 - reported to the other ranks, then re-raised
            error = err
    message = [None if error is None else f"{type(error).__name__}: {error}"]
    dist.broadcast_object_list(message, src=0)
    if error is not None:
        raise error
    if message[0] is not None:
        raise RuntimeError(f"rank 0 failed: {message[0]}")
    return result
