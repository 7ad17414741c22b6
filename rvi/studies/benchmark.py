"""The 2x2 study: {naturally, adversarially trained model} x {natural, adversarial input}.

:func:`run_benchmark` trains (or loads from the cache) both models for every seed, attacks each
with torchattacks, explains clean and adversarial images with Captum, scores every map with every
metric against the clean and the perturbed image, adds the controls, and returns a
:class:`BenchmarkResult` of per-image records from which every table and figure is derived.
Each seed's models are scored by :func:`rvi.scoring.pipeline.score_model_set`, the path
:func:`rvi.compare` and the sweep use too.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from pathlib import Path
from typing import Optional

import captum
import pandas as pd
import torch
import torchattacks
from torch import nn

from .. import distributed as ddp
from .._core.checks import seeded
from ..config import BenchmarkConfig
from ..data import Dataset, load_dataset
from ..metrics.basic import check_installed
from ..models.cache import cached_model_path, default_cache_dir, get_trained_model
from ..models.train import new_model, resolve_recipe
from ..report.result import BenchmarkResult
from ..scoring.controls import random_weights_model
from ..scoring.cost import Estimate, estimate_run, model_speed, training_seconds
from ..scoring.pipeline import CellSpec, score_model_set, timed
from ..scoring.records import NATURAL_ROBUST, ModelSet
from ..version import __version__


def run_benchmark(config: BenchmarkConfig, *, data: Optional[Dataset] = None,
                  progress: bool = False, distributed: Optional[bool] = None
                  ) -> Optional[BenchmarkResult]:
    """Run the study described by ``config``.

    Each piece of work is done once per seed: one set of adversarial examples per model (also
    used for the accuracy row of the same attack), one map per model x input x method scored by
    every metric against every reference, the trivial explainers once per image, and one map per
    randomization step scored by every metric and similarity measure.

    Args:
        config: what to run.
        data: an already loaded dataset to use instead of ``config.dataset`` (its name must
            match ``config.dataset``; cached models are keyed by its content).
        progress: show progress bars (training, attacks, attributions).
        distributed: None (default): shard when a process group of 2+ processes exists (every
            rank must call this with the same arguments; training is data-parallel, and the
            test images are sharded as in :func:`rvi.scoring.pipeline.score_model_set`); False:
            this process works alone; True: requires a process group.

    Returns:
        A :class:`~rvi.report.result.BenchmarkResult`; None on ranks other than 0 when sharded.
    """
    if not isinstance(config, BenchmarkConfig):
        raise ValueError(f"config must be a BenchmarkConfig, got {type(config).__name__}")
    if data is not None and not isinstance(data, Dataset):
        raise ValueError(f"data must be an rvi.data.Dataset or None, got {type(data).__name__}")
    distributed = ddp.active(distributed)
    started = time.perf_counter()
    if data is None:
        data = load_dataset(config.dataset, config.data_dir, download=config.download)
    elif data.name != config.dataset:
        raise ValueError(f"data is {data.name!r} but config.dataset is {config.dataset!r}")
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    n, recipes = check_run(config, data, cache_dir)
    images, labels = data.test_images[:n], data.test_labels[:n]
    spec = CellSpec.from_benchmark(config, n)
    estimate = None
    if progress or config.max_minutes is not None:
        estimate = estimate_benchmark(config, data, cache_dir, n, spec, recipes,
                                      show=progress and (ddp.is_main() or not distributed))
    timings, training, info = {}, {}, []
    parts = []
    for seed in config.seeds:
        with timed(timings, f"train/seed{seed}"):
            trained, controls = _models(config, data, seed, recipes, cache_dir, training, progress)
        info += [dict(seed=seed, **describe_model(name, model)) for name, model in trained.items()]
        parts.append(score_model_set(spec, seed, trained, controls, NATURAL_ROBUST, images,
                                     labels, data.num_classes, timings, progress, distributed))
    if not ddp.is_main() and distributed:
        return None

    timings["total"] = time.perf_counter() - started
    meta = {"timings_seconds": {k: round(v, 2) for k, v in timings.items()},
            "training": training, "environment": environment(config.device),
            "n_test": n, "dataset_size": {"train": len(data.train_images),
                                          "test": len(data.test_images)}}
    if estimate is not None:
        meta["estimate_seconds"] = {k: round(v, 2) for k, v in estimate.seconds.items()}
    return assemble(config, parts, meta, NATURAL_ROBUST, info)


def check_run(config: BenchmarkConfig, data: Dataset, cache_dir: Path) -> tuple:
    """Everything a run can check before its first model is trained or attacked: the test
    images asked for, the optional packages of the chosen metrics, the device, each seed's
    recipes resolved on this dataset (automatic epochs against a given warm-up or threshold
    start; :func:`~rvi.models.train.resolve_recipe`, the run's one resolution of each recipe) and
    a writable cache folder. Costs a model construction, no training.

    Returns:
        ``(n, recipes)``: the number of test images the run uses, and ``{(kind, seed): the
        resolved TrainConfig}`` of every model it trains.
    """
    n = len(data.test_images) if config.n_test is None else config.n_test
    if n > len(data.test_images):
        raise ValueError(f"n_test must be at most {len(data.test_images)} for {data.name}, got {n}")
    check_installed(config.metrics)
    check_device(config.device)
    probe = new_model(config.model, config.natural, data.num_classes, data.image_shape[0])
    info = data.info()  # hashes every training image: once, not once per recipe
    recipes = {}
    for seed in config.seeds:
        for kind in NATURAL_ROBUST.trained:
            try:
                recipes[kind, seed] = resolve_recipe(config.recipe(kind, seed), info, probe)
            except ValueError as err:
                raise ValueError(f"{kind} recipe on {data.name} ({len(data.train_images)} "
                                 f"training images): {err}") from err
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cache_dir {str(cache_dir)!r} cannot be created: {err}") from err
    if not os.access(cache_dir, os.W_OK | os.X_OK):
        raise PermissionError(f"cache_dir {str(cache_dir)!r} is not writable; choose another "
                              "(--cache-dir) or fix its permissions")
    return n, recipes


def estimate_benchmark(config: BenchmarkConfig, data: Dataset, cache_dir: Path, n: int,
                       spec: CellSpec, recipes: dict, show: bool) -> Estimate:
    """The run's predicted time per stage (:func:`rvi.scoring.cost.estimate_run`), timed on untrained
    models of the architecture, training counted for the models not in the cache; printed when
    ``show``, refused above ``config.max_minutes``. Costs seconds, no training."""
    with seeded(0, torch.device("cpu")):  # the probe models leave the RNG as it was
        probe = {kind: new_model(config.model, config.recipe(kind, 0), data.num_classes,
                                 data.image_shape[0]).to(config.device)
                 for kind in NATURAL_ROBUST.trained}
    train, info = 0.0, data.info()
    for seed in config.seeds:
        for kind in NATURAL_ROBUST.trained:
            recipe = recipes[kind, seed]
            if cached_model_path(cache_dir, info, config.model, recipe).exists():
                continue
            speed = model_speed(probe[kind], data.train_images, recipe.batch_size)
            train += training_seconds(speed, recipe.epochs, len(data.train_images),
                                      recipe.attack.steps if recipe.adversarial else 0)
    return estimate_run(config, spec, NATURAL_ROBUST, probe, data.test_images[:n],
                        data.num_classes, train_seconds=train, show=show)


def check_device(device: str) -> None:
    """Raise ``ValueError`` unless torch knows ``device`` and it is present (a CUDA device on a
    machine without one is refused here, not at the first tensor moved)."""
    try:
        where = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must be a torch device such as cpu or cuda, got {device!r}") \
            from err
    if where.type == "cuda" and not (torch.cuda.is_available() and
                                     (where.index or 0) < torch.cuda.device_count()):
        raise ValueError(f"device {device!r} is not available here "
                         f"({torch.cuda.device_count()} CUDA devices); use device cpu")


def assemble(config: BenchmarkConfig, parts: list, meta: dict, models: ModelSet,
             info: list) -> BenchmarkResult:
    """One :class:`BenchmarkResult` from the :class:`~rvi.scoring.pipeline.SeedScores` of every
    seed (the figures' examples are the first seed's); ``info`` has one row per (seed, trained
    model) from :func:`describe_model`."""
    return BenchmarkResult(
        config=config, records=pd.concat([r for p in parts for r in p.records], ignore_index=True),
        accuracy=pd.DataFrame([r for p in parts for r in p.accuracy]),
        cascading=pd.DataFrame([r for p in parts for r in p.randomization]),
        examples=parts[0].examples, meta=meta, models={**models.to_dict(), "info": info},
        mechanism=pd.DataFrame([r for p in parts for r in p.mechanism]))


def describe_model(name: str, model: nn.Module) -> dict:
    """What rvi can know about a model: ``{"model": name, "class": its class name,
    "parameters": parameter count, "fingerprint": weights_fingerprint(model)}``."""
    return {"model": name, "class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "fingerprint": weights_fingerprint(model)}


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 (hex) of the model's ``state_dict``: for each entry in order, its name, dtype,
    shape and the raw bytes of its values (CPU, contiguous, native byte order)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _models(config: BenchmarkConfig, data: Dataset, seed: int, recipes: dict, cache_dir: Path,
            training: dict, progress: bool) -> dict:
    """``(trained, controls)``: the natural and robust models of ``seed`` (trained or cached, with
    :func:`check_run`'s resolved ``recipes``) and the shared random-weights control; each training
    run is summarized in ``training``."""
    models = {}
    for kind in NATURAL_ROBUST.trained:
        recipe = recipes[kind, seed]
        model, history, path = get_trained_model(data, config.model, recipe, cache_dir,
                                                 device=config.device, quiet=not progress)
        models[kind] = model
        training[f"{kind}/seed{seed}"] = {
            # automatic epochs and warm-up written out: what "auto" meant in this rvi version
            "recipe": recipe.label, "checkpoint": path.name,
            "epochs": len(history),
            "train_seconds": round(sum(h["seconds"] for h in history), 1),
            "final_train_loss": history[-1]["loss"],
            "final_train_accuracy": history[-1]["accuracy"]}
    control = random_weights_model(config.model, seed, in_channels=data.image_shape[0],
                                   num_classes=data.num_classes).to(config.device).eval()
    return models, {"random_weights": control}


def environment(device: str) -> dict:
    """Versions and machine facts stored with every result."""
    info = {"rvi": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchattacks": torchattacks.__version__, "captum": captum.__version__,
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
