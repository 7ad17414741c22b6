"""The robustness-interpretability curve: models trained over a grid of training eps.

A sweep point is (dataset, architecture, training eps, seed). Its recipe is rvi's default
(:class:`~rvi.config.TrainConfig`) with the PGD-7 training attack scaled to eps (step size eps/3,
as the seed study's 0.3/0.1); eps 0 is the natural recipe. The eps 0.3 MNIST point is therefore
the very recipe of ``rvi bench``'s robust model, and shares its cached models.

Each point is one *job*: a JSON-able dict (:func:`make_jobs`) that :func:`run_job` turns into a
JSON-able record (accuracies, per-metric means, per-image scores) with no other input, so any
engine (:mod:`rvi.engines`) can run it. :func:`run_sweep` writes each finished record atomically
to ``out_dir/jobs/`` under a key of everything that determines it, so a rerun skips them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

# EPS_GRIDS and REFERENCE_EPS live in the leaf module (config reads them) and are re-exported here
from ._checks import EPS_GRIDS, REFERENCE_EPS, check_int, check_range, optional_int  # noqa: F401
from ._io import atomic_write
from .config import AttackConfig, SweepConfig, TrainConfig, parse_eval_attack

log = logging.getLogger(__name__)

#: PGD iterations of the training attack at every eps.
TRAIN_STEPS = 7
#: Version of the job record; part of every record key.
RECORD_FORMAT = "rvi-sweep-job-1"
#: Job fields that do not change a record (where and how fast it is computed).
_NOT_IN_KEY = ("cache_dir", "data_dir", "download", "device", "threads")


def sweep_recipe(eps: float, seed: int = 0, epochs: Optional[int] = None) -> TrainConfig:
    """The training recipe of one sweep point: natural for ``eps == 0``, else PGD-7 at ``eps``
    with step size ``eps / 3`` (rounded to 10 decimals, so 0.3 gives exactly 0.1).
    ``epochs=None`` keeps the recipe's automatic epochs."""
    check_range("eps", eps, 0.0, 1.0, low_open=False)
    check_int("seed", seed, 0)
    optional_int(epochs, "epochs")
    if eps == 0:
        return TrainConfig(seed=seed, epochs=epochs)
    return TrainConfig(adversarial=True, attack=pgd7(eps), seed=seed, epochs=epochs)


def pgd7(eps: float) -> AttackConfig:
    """PGD-7 at ``eps`` with step ``eps / 3`` and a random start (the seed study's attack)."""
    return AttackConfig(eps=float(eps), alpha=round(eps / 3, 10), steps=TRAIN_STEPS)


def make_jobs(config: SweepConfig) -> list:
    """One JSON-able job per (training eps, seed), the largest eps (the longest jobs) first."""
    if not isinstance(config, SweepConfig):
        raise ValueError(f"config must be a SweepConfig, got {type(config).__name__}")
    fields = ("dataset", "data_dir", "download", "model", "epochs", "eval_attacks", "methods",
              "metrics", "target", "n_test", "eval_n", "faithfulness_n", "batch_size",
              "cache_dir", "device")
    common = {name: getattr(config, name) for name in fields}
    common = {k: list(v) if isinstance(v, tuple) else v for k, v in common.items()}
    return [{**common, "eps": eps, "seed": seed, "reference_eps": config.reference,
             "eval_eps": list(config.eval_eps_for(eps)), "threads": 1}
            for eps in sorted(config.eps_grid, reverse=True) for seed in config.seeds]


def record_key(job: dict, model_key: str) -> str:
    """16 hex digits over the job's result-defining fields, the trained model's cache key
    (:func:`rvi.cache.cache_key`: data, architecture, recipe) and :data:`RECORD_FORMAT`."""
    fields = {k: v for k, v in job.items() if k not in _NOT_IN_KEY}
    blob = json.dumps({"job": fields, "model": model_key, "format": RECORD_FORMAT},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def record_path(out_dir, job: dict, key: str) -> Path:
    """``out_dir/jobs/<dataset>-<model>-eps<eps>-seed<seed>-<key>.json.gz``."""
    name = f"{job['dataset']}-{job['model']}-eps{job['eps']:g}-seed{job['seed']}-{key}.json.gz"
    return Path(out_dir) / "jobs" / name


def write_record(path: Path, record: dict) -> None:
    """Write a job record atomically (gzip JSON, no NaN)."""
    with atomic_write(path) as handle:
        handle.write(gzip.compress(json.dumps(record, allow_nan=False).encode()))


def read_record(path: Path) -> dict:
    """A job record written by :func:`write_record`."""
    return json.loads(gzip.decompress(Path(path).read_bytes()))


def _load(job: dict):
    from .data import load_dataset

    return load_dataset(job["dataset"], job["data_dir"], download=job["download"])


def run_job(job: dict) -> dict:
    """Train (or load from the cache) one sweep model, measure it and score its maps.

    A pure function of ``job`` (a dict from :func:`make_jobs`) apart from the model cache:
    clean accuracy and each ``eval_attacks`` entry at each ``eval_eps`` (``fgsm``/``pgd`` on the
    first ``n_test`` test images, the others on the first ``eval_n``); maps of natural inputs
    and of PGD-7 inputs at ``reference_eps``, scored by :func:`rvi.scoring.score_model` with
    every metric. Returns a JSON-able record (per-image scores as base64 float32).
    """
    import torch

    from .cache import cache_key, get_trained_model

    threads = torch.get_num_threads()
    torch.set_num_threads(job["threads"])
    try:
        started = time.perf_counter()
        data = _load(job)
        recipe = sweep_recipe(job["eps"], job["seed"], job["epochs"])
        model, history, path = get_trained_model(data, job["model"], recipe, job["cache_dir"],
                                                 device=job["device"], quiet=True)
        trained = time.perf_counter()
        n = len(data.test_images) if job["n_test"] is None else min(job["n_test"],
                                                                    len(data.test_images))
        images, labels = data.test_images[:n], data.test_labels[:n]
        rows, adversarial = _accuracy_rows(job, model, images, labels, data.num_classes)
        evaluated = time.perf_counter()
        frames, means = _scores(job, model, images, labels, adversarial)
        return {"format": RECORD_FORMAT, "job": job,
                "model": {"checkpoint": path.name,
                          "cache_key": cache_key(data, job["model"], recipe),
                          "recipe": recipe.label, "epochs": len(history),
                          "final_train_accuracy": history[-1]["accuracy"],
                          "num_classes": data.num_classes},
                "accuracy": rows, "means": means, "images": frames,
                "seconds": {"train": round(trained - started, 2),
                            "evaluate": round(evaluated - trained, 2),
                            "score": round(time.perf_counter() - evaluated, 2)}}
    finally:
        torch.set_num_threads(threads)


def _accuracy_rows(job: dict, model, images, labels, num_classes: int) -> tuple:
    """Accuracy rows (clean, then each attack at each evaluation eps) and the PGD-7 images at
    the reference eps (made once: also the adversarial inputs of the maps)."""
    from .attacks import attack
    from .evaluate import predict

    n = len(images)
    subset = n if job["eval_n"] is None else min(job["eval_n"], n)

    def run_attack(config: AttackConfig, count: int):
        return attack(model, images[:count], labels[:count], config, batch_size=job["batch_size"],
                      seed=job["seed"], num_classes=num_classes)

    def accuracy(inputs) -> float:
        return float((predict(model, inputs) == labels[:len(inputs)]).float().mean())

    reference = pgd7(job["reference_eps"])
    adversarial = run_attack(reference, n)
    rows = [{"attack": "clean", "eval_eps": 0.0, "label": "clean", "n": n,
             "accuracy": accuracy(images)}]
    for eps in job["eval_eps"]:
        for spec in job["eval_attacks"]:
            config = parse_eval_attack(spec, pgd7(eps))
            count = n if spec in ("fgsm", "pgd") else subset
            inputs = adversarial if config == reference else run_attack(config, count)
            rows.append({"attack": spec, "eval_eps": float(eps), "label": config.label,
                         "n": count, "accuracy": accuracy(inputs)})
    return rows, adversarial


def _scores(job: dict, model, images, labels, adversarial) -> tuple:
    """Per-image score frames (as JSON) and per-score means of natural and adversarial inputs."""
    import numpy as np
    import pandas as pd

    from .evaluate import predict
    from .records import frame_to_json
    from .scoring import score_model

    frames, means = {}, {}
    for kind, inputs in (("natural", images), ("adversarial", adversarial)):
        references = {"clean": images}
        if kind == "adversarial":
            references["perturbed"] = inputs
        scores, _ = score_model(model, inputs, references=references, methods=job["methods"],
                                metrics=job["metrics"], target=job["target"], labels=labels,
                                seed=job["seed"], batch_size=job["batch_size"],
                                faithfulness_n=job["faithfulness_n"])
        frame = pd.DataFrame({"image": np.arange(len(images)), "label": labels.numpy(),
                              "prediction": predict(model, inputs).numpy()})
        for key, values in scores.items():
            frame[key.column] = values
        frames[kind] = frame_to_json(frame)
        means[kind] = {key.column: None if np.isnan(values).all() else float(np.nanmean(values))
                       for key, values in scores.items()}
    return frames, means


def run_sweep(config: SweepConfig, *, progress: bool = False):
    """Run (or resume) the sweep ``config`` describes and aggregate it.

    Jobs whose record is already in ``config.out_dir/jobs/`` are not run again; the others go
    to ``config.backend`` (:mod:`rvi.engines`); each finished record is written atomically as
    soon as it arrives. A job that fails is logged with its config and retried once; one that
    fails twice is listed in the result's ``failed`` (the sweep goes on without it).

    Returns:
        A :class:`~rvi.sweep_result.SweepResult`.
    """
    from .benchmark import default_cache_dir
    from .cache import cache_key
    from .engines import run_jobs
    from .sweep_result import SweepResult

    if not isinstance(config, SweepConfig):
        raise ValueError(f"config must be a SweepConfig, got {type(config).__name__}")
    cache_dir = str(Path(config.cache_dir) if config.cache_dir else default_cache_dir())
    config_jobs = make_jobs(replace(config, cache_dir=cache_dir))
    data_info = _load(config_jobs[0]).info()  # the training-data hash, once for every job
    targets, todo = {}, []  # (eps, seed) -> (record path, record key)
    for job in config_jobs:
        recipe = sweep_recipe(job["eps"], job["seed"], job["epochs"])
        key = record_key(job, cache_key(data_info, job["model"], recipe))
        path = record_path(config.out_dir, job, key)
        targets[(job["eps"], job["seed"])] = path, key
        if not path.exists():
            todo.append(job)
    log.info("sweep: %d jobs, %d already done", len(config_jobs), len(config_jobs) - len(todo))

    def finished(job: dict, record: dict) -> None:
        path, key = targets[(job["eps"], job["seed"])]
        write_record(path, {**record, "key": key})

    failed = run_jobs(todo, config, finished, progress=progress)
    records = [read_record(path) for path, _ in targets.values() if path.exists()]
    return SweepResult(config=config, records=records, failed=failed)
