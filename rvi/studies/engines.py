"""Engines that run sweep jobs: a local process pool, or Ray tasks; one retry loop for both.

A job is a frozen dataclass (:class:`rvi.studies.sweep_job.SweepJob`) and the function that runs it
(:func:`rvi.studies.sweep_job.run_job`) a pure function of it, so an engine only has to call that
function somewhere and hand back the record as a :class:`concurrent.futures.Future`:

- ``local``: a ``spawn`` process pool of ``workers`` processes (default: one per core), each job
  with ``threads`` torch threads (default: cores / workers); ``workers=1`` runs the jobs one
  after another in the calling process.
- ``ray``: ``ray.init(address=ray_address)`` unless this process already joined a cluster; each
  job is a Ray task asking for ``threads`` CPUs (default 1) and, on a CUDA device,
  ``gpus_per_job`` GPUs. Installed with ``pip install "rvi[ray]"``.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
from dataclasses import replace
from typing import Callable


from .._core.checks import installed
from .._core.progress import progress_bar

log = logging.getLogger(__name__)

#: Attempts per job: the first run and one retry.
ATTEMPTS = 2


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _InProcess:
    """Runs each job at once in this process; the result comes back as a finished future."""

    #: ``submit`` runs the job, so one at a time: its record is written before the next starts
    capacity = 1

    def __init__(self, run: Callable, threads: int):
        self.run, self.threads = run, threads

    def submit(self, job) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(self.run(replace(job, threads=self.threads)))
        except Exception as err:  # noqa: BLE001 (reported and retried by the caller)
            future.set_exception(err)
        return future

    def close(self, abort: bool = False) -> None:
        pass


class _Pool:
    """A ``spawn`` process pool (CUDA cannot be forked); one job per process at a time."""

    def __init__(self, run: Callable, workers: int, threads: int):
        self.run, self.threads, self.capacity = run, threads, workers
        self.pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, job) -> cf.Future:
        return self.pool.submit(self.run, replace(job, threads=self.threads))

    def close(self, abort: bool = False) -> None:
        """Shut the pool down; ``abort`` (an interrupt or an error in the driver) also stops
        the running jobs instead of letting them and the queued ones finish (they are
        resumable: checkpoints per epoch, records written whole)."""
        if not abort:
            self.pool.shutdown(wait=True, cancel_futures=True)
            return
        processes = list((self.pool._processes or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()


class _Ray:
    """Each job a Ray task with its CPU (and GPU) request."""

    def __init__(self, run: Callable, address, threads: int, gpus: float):
        if not installed("ray"):
            raise ValueError('backend "ray" needs ray: pip install "rvi[ray]"')
        import ray  # optional (the ray extra), so imported only when this backend is chosen
        if not ray.is_initialized():
            ray.init(address=address)
        self.ray, self.threads, self.refs = ray, threads, []
        self.capacity = float("inf")  # Ray queues the tasks its cluster cannot start yet
        self.task = ray.remote(run).options(num_cpus=threads, num_gpus=gpus, max_retries=0)

    def submit(self, job) -> cf.Future:
        ref = self.task.remote(replace(job, threads=self.threads))
        self.refs.append(ref)
        return ref.future()

    def close(self, abort: bool = False) -> None:
        """``abort`` cancels the tasks still running or queued."""
        if abort:
            for ref in self.refs:
                self.ray.cancel(ref, force=True)


def make_engine(run: Callable, config):
    """The engine ``config.backend`` names, running ``run(job)`` for each job, sized from
    ``config.workers``/``threads``."""
    if config.backend == "ray":
        gpus = config.gpus_per_job if config.device.startswith("cuda") else 0
        return _Ray(run, config.ray_address, config.threads or 1, gpus)
    workers = config.workers or cores()
    threads = config.threads or max(1, cores() // workers)
    return _InProcess(run, threads) if workers == 1 else _Pool(run, workers, threads)


def run_jobs(jobs: list, run: Callable, config, finished: Callable, *,
             progress: bool = False) -> list:
    """Run ``run(job)`` for each of ``jobs`` (frozen dataclasses with a ``threads`` field, e.g.
    :class:`rvi.studies.sweep_job.SweepJob`; ``run`` a module-level function, so that process pools and
    Ray can ship it) on ``config``'s engine, calling ``finished(job, record)`` for each record as
    it arrives. A failed job is logged with its config and submitted once more.

    Returns:
        ``[{"job": job, "error": text}]`` for the jobs that failed :data:`ATTEMPTS` times.
    """
    if not jobs:
        return []
    engine = make_engine(run, config)
    failed, aborted = [], True
    queue, pending = list(jobs), {}
    try:
        with progress_bar(total=len(jobs), desc="sweep jobs", disable=not progress,
                          unit="job") as bar:
            while queue or pending:
                while queue and len(pending) < engine.capacity:  # no more than can run at once
                    job = queue.pop(0)
                    pending[engine.submit(job)] = (job, 1)
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    job, attempt = pending.pop(future)
                    error = future.exception()
                    if error is None:
                        finished(job, future.result())
                        bar.update()
                        continue
                    text = f"{type(error).__name__}: {error}"
                    log.warning("sweep job failed (attempt %d of %d): %s; job: %s", attempt,
                                ATTEMPTS, text, job)
                    if attempt < ATTEMPTS:
                        pending[engine.submit(job)] = (job, attempt + 1)
                    else:
                        failed.append({"job": job, "error": text})
                        bar.update()
        aborted = False
    finally:
        engine.close(abort=aborted)
    return failed
