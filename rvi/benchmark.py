"""The 2x2 study: {naturally, adversarially trained model} x {natural, adversarial input}.

:func:`run_benchmark` trains (or loads from the cache) both models for every seed, attacks each
with torchattacks, explains clean and adversarial images with Captum, scores every map with every
metric against the clean and the perturbed image, adds the controls, and returns a
:class:`BenchmarkResult` of per-image records from which every table and figure is derived.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .attacks import attack
from .cache import get_trained_model
from .config import BenchmarkConfig, parse_eval_attack
from .controls import TRIVIAL_EXPLAINERS, cascading_randomization, random_weights_model
from .data import Dataset, load_dataset
from .evaluate import evaluate
from .metrics import METRICS, alignment, cleanliness
from .result import BenchmarkResult
from .saliency import explain

#: Decimals kept for the example images and maps stored with a result (for figures).
_EXAMPLE_DECIMALS = 4


def default_cache_dir() -> Path:
    """``$RVI_CACHE_DIR`` if set, else ``~/.cache/rvi/models``."""
    if os.environ.get("RVI_CACHE_DIR"):
        return Path(os.environ["RVI_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rvi" / "models"


@contextlib.contextmanager
def _timed(timings: dict, stage: str):
    """Record the wall time of the body under ``timings[stage]`` (seconds)."""
    tick = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - tick


def run_benchmark(config: BenchmarkConfig, *, data: Optional[Dataset] = None,
                  progress: bool = False) -> BenchmarkResult:
    """Run the study described by ``config``.

    Args:
        config: what to run.
        data: an already loaded dataset to use instead of ``config.dataset`` (its name must
            match ``config.dataset``; cached models are keyed by its content).
        progress: show progress bars (training, attacks, attributions).

    Returns:
        A :class:`~rvi.result.BenchmarkResult`.
    """
    if not isinstance(config, BenchmarkConfig):
        raise ValueError(f"config must be a BenchmarkConfig, got {type(config).__name__}")
    if data is not None and not isinstance(data, Dataset):
        raise ValueError(f"data must be an rvi.data.Dataset or None, got {type(data).__name__}")
    started = time.perf_counter()
    if data is None:
        data = load_dataset(config.dataset, config.data_dir, download=config.download)
    elif data.name != config.dataset:
        raise ValueError(f"data is {data.name!r} but config.dataset is {config.dataset!r}")
    n = len(data.test_images) if config.n_test is None else config.n_test
    if n > len(data.test_images):
        raise ValueError(f"n_test must be at most {len(data.test_images)} for {data.name}, got {n}")
    images, labels = data.test_images[:n], data.test_labels[:n]
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    timings, training, records, accuracy, cascades = {}, {}, [], [], []
    examples = None
    for seed in config.seeds:
        with _timed(timings, f"train/seed{seed}"):
            models = {}
            for kind in ("natural", "robust"):
                recipe = config.recipe(kind, seed)
                model, history, path = get_trained_model(data, config.model, recipe, cache_dir,
                                                         device=config.device,
                                                         quiet=not progress)
                models[kind] = model
                training[f"{kind}/seed{seed}"] = {
                    "recipe": recipe.label, "checkpoint": path.name, "epochs": len(history),
                    "train_seconds": round(sum(h["seconds"] for h in history), 1),
                    "final_train_loss": history[-1]["loss"],
                    "final_train_accuracy": history[-1]["accuracy"]}
            models["random_weights"] = random_weights_model(
                config.model, seed, in_channels=data.image_shape[0],
                num_classes=data.num_classes).to(config.device).eval()

        with _timed(timings, f"evaluate/seed{seed}"):
            accuracy += _accuracy_rows(config, models, images, labels, seed, progress)

        with _timed(timings, f"attack/seed{seed}"):
            adversarial = {}
            for kind in tqdm(("natural", "robust"), desc=f"attack ({config.attack.label})",
                             disable=not progress, unit="model"):
                source = models[_other(kind)] if config.transfer else models[kind]
                adversarial[kind] = attack(source, images, labels, config.attack,
                                           batch_size=config.batch_size, seed=seed,
                                           num_classes=data.num_classes)

        with _timed(timings, f"explain/seed{seed}"):
            cells = [("natural", "natural"), ("natural", "adversarial"), ("robust", "natural"),
                     ("robust", "adversarial")]
            if "random_weights" in config.controls:
                cells.append(("random_weights", "natural"))
            maps_for_grid = {}
            for model_kind, input_kind in tqdm(cells, desc="explain and score",
                                               disable=not progress, unit="cell"):
                inputs = images if input_kind == "natural" else adversarial[model_kind]
                frame, main_maps = _score_cell(config, models[model_kind], images, inputs,
                                               labels, seed)
                frame.insert(0, "input", input_kind)
                frame.insert(0, "model", model_kind)
                frame.insert(0, "seed", seed)
                records.append(frame)
                maps_for_grid[f"{model_kind}/{input_kind}"] = main_maps[:config.grid_images]

        if "cascading" in config.controls:
            with _timed(timings, f"cascading/seed{seed}"):
                cascades += _cascading_rows(config, models, images, labels, seed, progress)
        if examples is None:
            examples = _examples(config, images, labels, adversarial, maps_for_grid)

    timings["total"] = time.perf_counter() - started
    meta = {"timings_seconds": {k: round(v, 2) for k, v in timings.items()},
            "training": training, "environment": environment(config.device),
            "n_test": n, "dataset_size": {"train": len(data.train_images),
                                          "test": len(data.test_images)}}
    return BenchmarkResult(config=config, records=pd.concat(records, ignore_index=True),
                           accuracy=pd.DataFrame(accuracy), cascading=pd.DataFrame(cascades),
                           examples=examples, meta=meta)


def _other(kind: str) -> str:
    return "robust" if kind == "natural" else "natural"


def _accuracy_rows(config: BenchmarkConfig, models: dict, images, labels, seed: int,
                   progress: bool) -> list:
    """Clean accuracy and ``fgsm``/``pgd`` on all images; the costly attacks (``pgd-SxR``,
    ``autoattack``) on the first ``eval_n``."""
    attacks = [parse_eval_attack(s, config.attack) for s in config.eval_attacks]
    cheap = [a for s, a in zip(config.eval_attacks, attacks) if s in ("fgsm", "pgd")]
    costly = [a for s, a in zip(config.eval_attacks, attacks) if s not in ("fgsm", "pgd")]
    subset = min(config.eval_n or len(images), len(images))
    groups = [(cheap, None)] + ([(costly, subset)] if costly else [])
    rows = []
    for kind in tqdm(("natural", "robust"), desc="accuracy under attack", disable=not progress,
                     unit="model"):
        for group, n_images in groups:
            result = evaluate(models[kind], images, labels, group, n=n_images,
                              batch_size=config.batch_size, seed=seed)
            n = result.pop("n")
            if n_images is not None:
                result.pop("clean")  # clean accuracy is reported on all images
            rows += [dict(seed=seed, model=kind, attack=k, accuracy=v, n=n)
                     for k, v in result.items()]
    return rows


def _score_cell(config: BenchmarkConfig, model, clean, inputs, labels, seed: int) -> tuple:
    """Per-image scores of one (model, input) cell; also returns the main method's maps."""
    references = {"clean": clean}
    if inputs is not clean:
        references["perturbed"] = inputs
    map_metrics = [m for m in config.metrics if METRICS[m].uses_map]
    columns, main_maps, predicted, target = {}, None, None, None
    target_arg = "true" if config.target == "true" else "predicted"
    for method in config.methods:
        result = explain(model, inputs, target_arg, method, labels=labels,
                         batch_size=config.batch_size, seed=seed)
        if main_maps is None:
            main_maps, predicted, target = result.maps, result.predicted, result.target
            columns["zero_map"] = result.zero_maps.numpy()
        _add_scores(columns, method, result.maps, references, map_metrics)
    for name in ("image", "edge", "noise"):
        if name in config.controls:
            maps = TRIVIAL_EXPLAINERS[name](inputs, seed=seed)
            _add_scores(columns, name, maps, references, map_metrics)
    for metric in config.metrics:
        if metric == "alignment":
            reference = "perturbed" if "perturbed" in references else "clean"
            columns[f"model/alignment/{reference}"] = alignment(
                model, inputs, batch_size=config.batch_size).cpu().numpy()
    frame = pd.DataFrame({"image": np.arange(len(inputs)), "label": labels.numpy(),
                          "target": target.numpy(), "prediction": predicted.numpy(),
                          "correct": (predicted == labels).numpy(), **columns})
    return frame, main_maps


def _add_scores(columns: dict, explainer: str, maps, references: dict, metrics: list) -> None:
    for reference, image in references.items():
        for metric in metrics:
            columns[f"{explainer}/{metric}/{reference}"] = \
                cleanliness(maps, image, metric).cpu().numpy()


def _cascading_rows(config: BenchmarkConfig, models: dict, images, labels, seed: int,
                    progress: bool) -> list:
    rows = []
    count = min(config.cascade_n, len(images))
    method = config.methods[0]
    for kind in tqdm(("natural", "robust"), desc="cascading randomization",
                     disable=not progress, unit="model"):
        for metric in config.metrics:
            steps = cascading_randomization(models[kind], images[:count], labels[:count], metric,
                                            method, seed=seed, batch_size=config.batch_size)
            modules = dict(models[kind].named_modules())
            rows += [dict(seed=seed, model=kind, metric=metric, method=method, step=step,
                          layer=layer if layer == "none"
                          else f"{layer}:{type(modules[layer]).__name__}", mean=score, n=count)
                     for step, (layer, score) in enumerate(steps)]
    return rows


def _examples(config, images, labels, adversarial: dict, maps: dict) -> dict:
    k = min(config.grid_images, len(images))

    def pack(tensor):
        return np.round(tensor[:k, 0].cpu().numpy().astype(np.float64), _EXAMPLE_DECIMALS).tolist()

    return {"labels": labels[:k].tolist(), "clean": pack(images),
            "adversarial": {kind: pack(x) for kind, x in adversarial.items()},
            "maps": {cell: pack(m) for cell, m in maps.items()},
            "method": config.methods[0]}


def environment(device: str) -> dict:
    """Versions and machine facts stored with every result."""
    import captum
    import torchattacks

    from . import __version__

    info = {"rvi": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchattacks": torchattacks.__version__, "captum": captum.__version__,
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
