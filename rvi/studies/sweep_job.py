"""One point of the eps sweep: a typed job, its recipe, and the JSON record it turns into.

A sweep point is (dataset, architecture, training eps, seed). Its recipe is rvi's default
(:class:`~rvi.config.TrainConfig`) with the PGD-7 training attack scaled to eps (step size eps/3,
as the seed study's 0.3/0.1); eps 0 is the natural recipe. The eps 0.3 MNIST point is therefore
the very recipe of ``rvi bench``'s robust model, and shares its cached models.

:func:`make_jobs` builds every :class:`SweepJob` of a :class:`~rvi.config.SweepConfig`;
:func:`run_job` turns one into a JSON-able record (accuracies, per-metric means, per-image
records) with no other input than the model cache, so any engine (:mod:`rvi.studies.engines`) can run
it. Records are stored under a key of everything that determines them (:func:`record_key`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from .._core.checks import check_int, check_range, optional_int
from ..config import CELL_OPTIONS, AttackConfig, CellOptions, SweepConfig, TrainConfig
from ..data import load_dataset
from ..models.cache import cache_key, get_trained_model
from ..scoring.pipeline import CellSpec, evaluation, score_model_set
from ..scoring.records import ModelSet, frame_to_json, json_value, score_keys

#: PGD iterations of the training attack at every eps.
TRAIN_STEPS = 7
#: Version of the job record; part of every record key (2: per-image records in the pipeline's
#: schema, both inputs in one frame).
RECORD_FORMAT = "rvi-sweep-job-2"
#: Job fields that do not change a record (where and how fast it is computed), and the model's
#: cache key, which :func:`record_key` takes apart from the job's fields.
NOT_IN_KEY = ("cache_dir", "data_dir", "download", "device", "threads", "model_key")
#: The :class:`~rvi.config.SweepConfig` fields every job of a sweep copies besides the per-cell
#: options (:data:`rvi.config.CELL_OPTIONS`).
FROM_CONFIG = ("dataset", "data_dir", "download", "model", "epochs", "cache_dir", "device")
#: The one model of a job, as the pipeline sees it: no reference comparison, no controls.
JOB_MODEL = "model"
JOB_MODELS = ModelSet((JOB_MODEL,), JOB_MODEL, {JOB_MODEL: None})


@dataclass(frozen=True, kw_only=True)
class SweepJob(CellOptions):
    """Everything one sweep point needs (built by :func:`make_jobs`; JSON-able via
    :meth:`to_dict`): the sweep's per-cell options (:class:`~rvi.config.CellOptions`), its data
    and model, ``eps`` and ``seed``; ``eval_eps``: the evaluation eps of its accuracy rows;
    ``model_key``: its model's cache key (:func:`rvi.models.cache.cache_key`, computed once by
    :func:`make_jobs`); ``threads``: torch threads while it runs (set by the engine)."""

    dataset: str
    data_dir: Optional[str]
    download: bool
    model: str
    epochs: Optional[int]
    cache_dir: str
    device: str
    eps: float
    seed: int
    reference_eps: float
    eval_eps: tuple
    model_key: str
    threads: int = 1

    def to_dict(self) -> dict:
        """The job as stored in its record (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in
                dataclasses.asdict(self).items()}

    def cells(self, n: int) -> CellSpec:
        """The pipeline's work on ``n`` test images: PGD-7 at the reference eps as the adversarial
        input, and each ``eval_attacks`` entry at each ``eval_eps`` (``fgsm``/``pgd`` on all
        images, the others on the first ``eval_n``), and the first-layer mechanism on the first
        :data:`MECHANISM_IMAGES` images."""
        evaluations = tuple(evaluation(spec, pgd7(eps), n, self.eval_n)
                            for eps, spec in self.evaluation_names())
        return CellSpec.from_options(self, pgd7(self.reference_eps), evaluations,
                                     controls=("mechanism",), cascade_n=MECHANISM_IMAGES)

    def evaluation_names(self) -> list:
        """``(eval eps, eval_attacks entry)`` of each evaluation, in the pipeline's order."""
        return [(eps, spec) for eps in self.eval_eps for spec in self.eval_attacks]


#: Test images of each sweep model's first-layer mechanism (:mod:`rvi.metrics.mechanism`).
MECHANISM_IMAGES = 200


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


def make_jobs(config: SweepConfig, data_info: Optional[dict] = None) -> list:
    """One :class:`SweepJob` per (training eps, seed), the largest eps (the longest jobs) first,
    each with its model's cache key, computed here once for the sweep (``data_info``: the
    dataset's :meth:`~rvi.data.Dataset.info`, loaded when not given)."""
    if not isinstance(config, SweepConfig):
        raise ValueError(f"config must be a SweepConfig, got {type(config).__name__}")
    if data_info is None:
        data_info = load_dataset(config.dataset, config.data_dir, download=config.download).info()
    shared = {name: getattr(config, name) for name in FROM_CONFIG + CELL_OPTIONS}
    return [SweepJob(**shared, eps=eps, seed=seed, reference_eps=config.reference,
                     eval_eps=tuple(config.eval_eps_for(eps)),
                     model_key=cache_key(data_info, config.model,
                                         sweep_recipe(eps, seed, config.epochs)))
            for eps in sorted(config.eps_grid, reverse=True) for seed in config.seeds]


def record_key(job: SweepJob) -> str:
    """16 hex digits over the job's result-defining fields, its model's cache key
    (:attr:`SweepJob.model_key`: data, architecture, recipe) and :data:`RECORD_FORMAT`."""
    fields = {k: v for k, v in job.to_dict().items() if k not in NOT_IN_KEY}
    blob = json.dumps({"job": fields, "model": job.model_key, "format": RECORD_FORMAT},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def record_path(out_dir, job: SweepJob, key: str) -> Path:
    """``out_dir/jobs/<dataset>-<model>-eps<eps>-seed<seed>-<key>.json.gz``."""
    name = f"{job.dataset}-{job.model}-eps{job.eps:g}-seed{job.seed}-{key}.json.gz"
    return Path(out_dir) / "jobs" / name


def run_job(job: SweepJob) -> dict:
    """Train (or load from the cache) one sweep model, measure it and score its maps.

    A pure function of ``job`` apart from the model cache: the pipeline's accuracy rows (clean,
    then each ``eval_attacks`` entry at each ``eval_eps``) and per-image records of natural
    inputs and of PGD-7 inputs at ``reference_eps`` (:func:`rvi.scoring.pipeline.score_model_set`).
    Returns a JSON-able record: ``job``, ``model``, ``accuracy`` rows (``attack`` entry,
    ``eval_eps``, ``label``, ``n``, ``accuracy``), per-input ``means`` of every score column,
    the first-layer ``mechanism`` (:func:`rvi.metrics.mechanism.mechanism_summary`: threshold channels,
    their thresholds, the share of the main method's mass through them and on the digit),
    ``records`` and ``seconds``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        started = time.perf_counter()
        data = load_dataset(job.dataset, job.data_dir, download=job.download)
        recipe = sweep_recipe(job.eps, job.seed, job.epochs)
        model, history, path = get_trained_model(data, job.model, recipe, job.cache_dir,
                                                 device=job.device, quiet=True)
        if not path.name.endswith(f"-{job.model_key}.pt"):  # e.g. a worker's other data files
            raise ValueError(f"job (eps {job.eps}, seed {job.seed}) expects model key "
                             f"{job.model_key}, but this process's data and recipe give "
                             f"{path.name}: is its copy of the {job.dataset} data another?")
        trained = time.perf_counter()
        n = len(data.test_images) if job.n_test is None else min(job.n_test,
                                                                 len(data.test_images))
        timings: dict = {}
        scores = score_model_set(job.cells(n), job.seed, {JOB_MODEL: model}, {}, JOB_MODELS,
                                 data.test_images[:n], data.test_labels[:n], data.num_classes,
                                 timings)
        names = [("clean", 0.0)] + [(spec, eps) for eps, spec in job.evaluation_names()]
        rows = [{"attack": name, "eval_eps": float(eps), "label": row["attack"], "n": row["n"],
                 "accuracy": row["accuracy"]} for (name, eps), row in zip(names, scores.accuracy)]
        return {"format": RECORD_FORMAT, "job": job.to_dict(),
                "model": {"checkpoint": path.name,
                          "cache_key": job.model_key,
                          "recipe": recipe.label, "epochs": len(history),
                          "final_train_accuracy": history[-1]["accuracy"],
                          "num_classes": data.num_classes},
                "accuracy": rows, "means": {frame["input"].iloc[0]: _means(frame)
                                            for frame in scores.records},
                "mechanism": {key: json_value(value) for key, value in scores.mechanism[0].items()
                              if key not in ("seed", "model")},
                "records": frame_to_json(pd.concat(scores.records, ignore_index=True)
                                         .drop(columns="model")),
                "seconds": {"train": round(trained - started, 2),
                            "evaluate": round(timings[f"attack/seed{job.seed}"]
                                              + timings[f"evaluate/seed{job.seed}"], 2),
                            "score": round(timings[f"explain/seed{job.seed}"], 2)}}
    finally:
        torch.set_num_threads(threads)


def _means(frame) -> dict:
    """``{score column: mean over the images}`` (None for a column without any value)."""
    means = {}
    for column in score_keys(frame):
        values = frame[column].to_numpy()
        means[column] = None if np.isnan(values).all() else float(np.nanmean(values))
    return means
