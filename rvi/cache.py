"""Trained models cached on disk, keyed by everything that determines them.

The key hashes the dataset name, the architecture, the full :class:`~rvi.config.TrainConfig`
and the checkpoint format, so a changed recipe never reuses a stale model. An interrupted
training run leaves its last epoch's checkpoint under the same key and resumes from it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Union

from .config import TrainConfig
from .data import Dataset
from .train import CHECKPOINT_FORMAT, load_checkpoint, new_model, train_model


def cache_key(dataset: str, architecture: str, config: TrainConfig) -> str:
    """A 16-hex-digit key for (dataset, architecture, recipe)."""
    blob = json.dumps({"dataset": dataset, "architecture": architecture,
                       "config": config.to_dict(), "format": CHECKPOINT_FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_model_path(cache_dir: Union[str, Path], dataset: str, architecture: str,
                      config: TrainConfig) -> Path:
    kind = "robust" if config.adversarial else "natural"
    key = cache_key(dataset, architecture, config)
    return Path(cache_dir) / f"{dataset}-{architecture}-{kind}-{key}.pt"


def get_trained_model(data: Dataset, architecture: str, config: TrainConfig,
                      cache_dir: Union[str, Path], *, device: str = "cpu",
                      quiet: bool = False) -> tuple:
    """Load the model for this recipe from ``cache_dir``, training (or resuming) it if needed.

    Returns:
        ``(model in eval mode, per-epoch history, checkpoint path)``.
    """
    path = cached_model_path(cache_dir, data.name, architecture, config)
    model = new_model(architecture, config, num_classes=data.num_classes,
                      in_channels=data.image_shape[0]).to(device)
    history = []
    if path.exists():
        history = load_checkpoint(path, model, architecture=architecture)["history"]
    if len(history) < config.epochs_for(len(data.train_images)):
        history = train_model(model, data.train_images, data.train_labels, config,
                              checkpoint_path=path, architecture=architecture, quiet=quiet)
    return model.eval(), history, path
