"""Engines: sizing, the missing-ray message, stopping the pool on a driver error, and a Ray local
cluster giving the same aggregated records as the in-process run (slow: ray.init takes seconds)."""

import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest

import rvi
import rvi.studies.sweep
from rvi.studies import engines
from rvi._core.checks import installed
from test_sweep import assert_same_aggregates


def test_local_engine_sizes(monkeypatch):
    monkeypatch.setattr(engines, "cores", lambda: 8)
    inline = engines.make_engine(rvi.studies.sweep.run_job, rvi.SweepConfig(workers=1))
    assert isinstance(inline, engines._InProcess) and inline.threads == 8
    pool = engines.make_engine(rvi.studies.sweep.run_job, rvi.SweepConfig(workers=4))
    try:
        assert isinstance(pool, engines._Pool) and pool.threads == 2
        assert pool.pool._max_workers == 4
    finally:
        pool.close()
    default = engines.make_engine(rvi.studies.sweep.run_job, rvi.SweepConfig())
    try:
        assert default.pool._max_workers == 8 and default.threads == 1
    finally:
        default.close()


def test_in_process_engine_hands_each_record_back_before_the_next_job(monkeypatch):
    """An interrupted in-process sweep keeps every record finished so far: job i + 1 starts only
    after job i's record reached ``finished`` (which writes it)."""
    started, written = [], []

    def fake_run_job(job):
        assert written == started  # every job started before this one is already written
        started.append(job.seed)
        if job.seed == 2:
            raise KeyboardInterrupt
        return {"seed": job.seed}

    jobs = rvi.studies.sweep.make_jobs(rvi.SweepConfig(dataset="synthetic", eps=(0.3,), seeds=(0, 1, 2, 3)))
    with pytest.raises(KeyboardInterrupt):
        engines.run_jobs(jobs, fake_run_job, rvi.SweepConfig(workers=1),
                         lambda job, record: written.append(record["seed"]))
    assert started == [0, 1, 2] and written == [0, 1]


def test_ray_backend_without_ray_says_how_to_install(monkeypatch, hide_distribution):
    monkeypatch.setitem(sys.modules, "ray", None)
    hide_distribution("ray")
    with pytest.raises(ValueError, match=r'pip install "rvi\[ray\]"'):
        engines.make_engine(rvi.studies.sweep.run_job, rvi.SweepConfig(backend="ray"))


@pytest.mark.slow  # ray.init alone takes about 8 s; the test 13 s on 2 idle cores, 26 s loaded
def test_ray_local_cluster_gives_the_same_aggregates(tiny_sweep):
    if not installed("ray"):
        pytest.skip('ray is not installed (pip install "rvi[ray]")')
    import ray
    config, local = tiny_sweep
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        remote = rvi.run_sweep(dataclasses.replace(
            config, backend="ray", workers=None, out_dir=str(Path(config.out_dir).parent / "ray")))
    finally:
        ray.shutdown()
    assert remote.failed == []
    assert_same_aggregates(remote, local)


def test_an_error_in_the_driver_stops_the_pool_workers(tiny_sweep, monkeypatch):
    config, _ = tiny_sweep
    seen = {}
    real = engines.make_engine

    def capture(run, cfg):
        engine = real(run, cfg)
        close = engine.close

        def snapshot(abort=False):
            seen["processes"] = list(engine.pool._processes.values())
            seen["abort"] = abort
            close(abort)
        engine.close = snapshot
        return engine

    monkeypatch.setattr(engines, "make_engine", capture)

    def stop(job, record):
        raise KeyboardInterrupt

    jobs = rvi.studies.sweep.make_jobs(dataclasses.replace(config, workers=2))
    with pytest.raises(KeyboardInterrupt):
        engines.run_jobs(jobs, rvi.studies.sweep.run_job, dataclasses.replace(config, workers=2), stop)
    assert seen["abort"] is True and seen["processes"]
    # Process.is_alive() can stay True for a child another thread reaped: ask the OS instead
    deadline = time.monotonic() + 30
    alive = [p.pid for p in seen["processes"]]
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _exists(pid)]
        time.sleep(0.1)
    assert alive == []


def _exists(pid: int) -> bool:
    """Whether a process (not yet reaped) with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").is_file() or \
        Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
