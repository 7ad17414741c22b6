"""The robustness-interpretability curve: models trained over a grid of training eps.

Each (training eps, seed) point is a :class:`~rvi.studies.sweep_job.SweepJob` that
:func:`~rvi.studies.sweep_job.run_job` turns into a record through the same pipeline as the 2x2 study.
:func:`run_sweep` writes each finished record atomically to ``out_dir/jobs/`` under a key of
everything that determines it, so a rerun skips them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

# EPS_GRIDS and REFERENCE_EPS live in the leaf module (config reads them) and are re-exported here
from .._core.catalog import EPS_GRIDS, REFERENCE_EPS  # noqa: F401
from ..config import SweepConfig
from ..metrics.basic import check_installed
from ..models.cache import default_cache_dir
from ..report.sweep_result import SweepResult
from ..scoring.records import read_record, write_record
from .engines import run_jobs
from .sweep_job import (SweepJob, make_jobs, record_key, record_path,  # noqa: F401 (re-exported)
                        run_job, sweep_recipe)

log = logging.getLogger(__name__)


def run_sweep(config: SweepConfig, *, progress: bool = False) -> SweepResult:
    """Run (or resume) the sweep ``config`` describes and aggregate it.

    Jobs whose record is already in ``config.out_dir/jobs/`` are not run again; the others go
    to ``config.backend`` (:mod:`rvi.studies.engines`); each finished record is written atomically as
    soon as it arrives. A job that fails is logged with its config and retried once; one that
    fails twice is listed in the result's ``failed`` (the sweep goes on without it).

    Returns:
        A :class:`~rvi.report.sweep_result.SweepResult`.
    """
    if not isinstance(config, SweepConfig):
        raise ValueError(f"config must be a SweepConfig, got {type(config).__name__}")
    check_installed(config.metrics)  # before any job, not when its scoring reaches the metric
    cache_dir = str(Path(config.cache_dir) if config.cache_dir else default_cache_dir())
    config_jobs = make_jobs(replace(config, cache_dir=cache_dir))  # each model's key, once
    targets, todo = {}, []  # (eps, seed) -> (record path, record key)
    for job in config_jobs:
        key = record_key(job)
        path = record_path(config.out_dir, job, key)
        targets[(job.eps, job.seed)] = path, key
        if not path.exists():
            todo.append(job)
    log.info("sweep: %d jobs, %d already done", len(config_jobs), len(config_jobs) - len(todo))

    def finished(job: SweepJob, record: dict) -> None:
        path, key = targets[(job.eps, job.seed)]
        write_record(path, {**record, "key": key})

    # run_job is looked up here, at call time, so that tests can replace rvi.studies.sweep.run_job
    failed = run_jobs(todo, run_job, config, finished, progress=progress)
    failed = [{"job": failure["job"].to_dict(), "error": failure["error"]} for failure in failed]
    records = [read_record(path) for path, _ in targets.values() if path.exists()]
    return SweepResult(config=config, records=records, failed=failed)
