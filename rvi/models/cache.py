"""Trained models cached on disk, keyed by everything that determines them.

The key hashes a fingerprint of the training data (sha256 over the bytes of the training images
and labels, plus the dataset's name and split parameters), the architecture, the full
:class:`~rvi.config.TrainConfig`, the checkpoint format and the training code's version
(:data:`rvi.models.train.TRAINING_VERSION`). Two datasets with the same name but different content
therefore never share a cached model. An interrupted training run leaves its last epoch's
checkpoint under the same key and resumes from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Optional, Union

from .. import distributed as ddp
from .._core.catalog import MODELS
from .._core.checks import check_choice
from .._core.compat import key_recipe
from .._core.io import file_lock, lock_path_of
from ..config import ONECYCLE_WARMUP_SHARE, TrainConfig
from ..data import Dataset
from .train import (CHECKPOINT_FORMAT, TRAINING_VERSION, load_checkpoint, new_model, resolve_recipe,
                    train_model)


def default_cache_dir() -> Path:
    """``$RVI_CACHE_DIR`` if set, else ``~/.cache/rvi/models``."""
    if os.environ.get("RVI_CACHE_DIR"):
        return Path(os.environ["RVI_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rvi" / "models"


def cache_key(data: Union[Dataset, dict], architecture: str, config: TrainConfig) -> str:
    """A 16-hex-digit key for (training data, architecture, recipe, training code). A recipe
    with automatic epochs or warm-up shares the key of the same recipe with them written out.

    Args:
        data: the :class:`~rvi.data.Dataset` (or its :meth:`~rvi.data.Dataset.info` dict).
    """
    info = _info(data)
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    # keyed by what it trains; fields added since rvi 0.6 left out where older models had them
    recipe = key_recipe(resolve_recipe(config, info, architecture).to_dict(), ONECYCLE_WARMUP_SHARE)
    blob = json.dumps({"data": info, "architecture": architecture, "config": recipe,
                       "format": CHECKPOINT_FORMAT, "training": TRAINING_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _info(data: Union[Dataset, dict]) -> dict:
    if isinstance(data, Dataset):
        return data.info()
    if isinstance(data, dict) and {"name", "fingerprint", "n_train", "num_classes",
                                   "image_shape"} <= set(data):
        return data
    raise ValueError(f"data must be a Dataset or its info() dict, got {type(data).__name__}")


def cached_model_path(cache_dir: Union[str, Path], data: Union[Dataset, dict], architecture: str,
                      config: TrainConfig) -> Path:
    """``cache_dir/<dataset>-<architecture>-<natural|robust>-<key>.pt``."""
    check_choice("architecture", architecture, MODELS)
    info = _info(data)
    return _path_of(cache_dir, info, architecture, config, cache_key(info, architecture, config))


def _path_of(cache_dir, info: dict, architecture: str, config: TrainConfig, key: str) -> Path:
    kind = "robust" if config.adversarial else "natural"
    return Path(cache_dir) / f"{info['name']}-{architecture}-{kind}-{key}.pt"


def get_trained_model(data: Dataset, architecture: str, config: TrainConfig,
                      cache_dir: Union[str, Path], *, device: str = "cpu",
                      quiet: bool = False) -> tuple:
    """Load the model for this recipe from ``cache_dir``, training (or resuming) it if needed.

    A cached checkpoint is served only when the recipe, dataset fingerprint and architecture it
    records give its file's key (:func:`recorded_key`); any other file under that name (copied
    over it, damaged) is moved aside to ``NAME.refused-TIME``, with a
    :class:`CacheEntryRefused` warning, and the model is trained anew. Processes that want
    the same key take turns (a lock beside the file): the second loads what the first trained.

    Returns:
        ``(model in eval mode, per-epoch history, checkpoint path)``.
    """
    info = _info(data)
    recipe = resolve_recipe(config, info, architecture)  # what is keyed, trained and recorded
    key = cache_key(info, architecture, recipe)
    path = _path_of(cache_dir, info, architecture, recipe, key)
    # the ranks of one torchrun job train one model together: a lock would deadlock them
    lock = contextlib.nullcontext() if ddp.is_distributed() else \
        file_lock(lock_path_of(path), wait=True, what=f"cached model {path.name}")

    def fresh():
        return new_model(architecture, recipe, num_classes=data.num_classes,
                         in_channels=data.image_shape[0]).to(device)

    with lock:
        model, history = fresh(), []
        if path.exists():
            state = _served_state(path, key, model, architecture)
            if state is None:  # refused: the model may hold its weights already
                model = fresh()
            else:
                history = state["history"]
        if len(history) < recipe.epochs:
            # the whole training set goes to the device once, not batch by batch
            images, labels = data.train_images.to(device), data.train_labels.to(device)
            history = train_model(model, images, labels, recipe,
                                  checkpoint_path=path, architecture=architecture, quiet=quiet,
                                  dataset_info=info)
    return model.eval(), history, path


class CacheEntryRefused(UserWarning):
    """A cached checkpoint did not hold the model its key names; it was moved aside."""


def recorded_key(state: dict) -> Optional[str]:
    """The cache key of what a checkpoint records it is (its dataset info, architecture and
    recipe); None when it records no dataset (written before rvi 0.6)."""
    if not state.get("dataset"):
        return None
    return cache_key(state["dataset"], state["architecture"],
                     TrainConfig.from_dict(state["config"]))


def _served_state(path: Path, key: str, model, architecture: str) -> Optional[dict]:
    """The checkpoint at ``path``, read once and loaded into ``model``, when it records the model
    of ``key``; otherwise None, after moving the file aside and warning."""
    try:
        state = load_checkpoint(path, model, architecture=architecture)
        recorded = recorded_key(state)
        reason = None if recorded == key else \
            f"it records another recipe, dataset or architecture (key {recorded})"
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:  # damaged, not rvi's
        reason = f"it cannot be read ({err})"
    if reason is None:
        return state
    aside = path.with_name(f"{path.name}.refused-{time.strftime('%Y%m%dT%H%M%S')}")
    if not ddp.is_main():  # under torchrun rank 0 moves it; every rank trains anew
        return None
    path.rename(aside)
    warnings.warn(f"cached model {path.name} refused: {reason}; moved to {aside.name}, "
                  "training anew", CacheEntryRefused, stacklevel=3)
    return None
