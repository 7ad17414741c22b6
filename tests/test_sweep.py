"""The sweep: recipes (eps 0 natural, eps 0.3 rvi's default robust recipe), SweepConfig, jobs and
their keys, a tiny synthetic sweep run in this process, resumed, retried, in a process pool and
from the command line."""

import copy
import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

import rvi
import rvi.models.cache
import rvi.studies.sweep
from rvi.studies.sweep import EPS_GRIDS, make_jobs, record_key, record_path, sweep_recipe
from rvi.scoring.records import read_record
from rvi.studies.sweep_job import SweepJob


def test_recipes_match_the_benchmark_defaults():
    assert sweep_recipe(0.0) == rvi.TrainConfig()
    assert sweep_recipe(0.3) == rvi.TrainConfig(adversarial=True)
    assert sweep_recipe(0.3, seed=4).seed == 4


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.15, 0.2, 0.25, 0.4])
def test_step_is_a_third_of_eps(eps):
    attack = sweep_recipe(eps).attack
    assert attack.eps == eps and attack.steps == 7
    assert attack.alpha == pytest.approx(eps / 3, abs=1e-10)


@pytest.mark.parametrize("kwargs, message", [({"eps": 2.0}, "eps"), ({"eps": -0.1}, "eps"),
                                             ({"eps": 0.1, "seed": -1}, "seed")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sweep_recipe(**kwargs)


# --- config, jobs and keys ------------------------------------------------------------------

def test_config_defaults_resolve_from_the_dataset():
    config = rvi.SweepConfig()
    assert config.eps_grid == EPS_GRIDS["mnist"] and config.reference == 0.3
    assert config.eval_eps_for(0.1) == (0.3, 0.1) and config.eval_eps_for(0.0) == (0.3,)
    assert config.eval_eps_for(0.3) == (0.3,)
    fashion = rvi.SweepConfig(dataset="fashion-mnist")
    assert fashion.eps_grid == (0.0, 0.05, 0.1, 0.15, 0.2) and fashion.reference == 0.1
    given = rvi.SweepConfig(eps=(0.3, 0.0), eval_eps=(0.2,), reference_eps=0.1)
    assert given.eps_grid == (0.0, 0.3) and given.eval_eps_for(0.3) == (0.1, 0.2)


@pytest.mark.parametrize("field, value", [
    ("eps", (0.1, 0.1)), ("eps", (1.5,)), ("eval_eps", (0.0,)), ("seeds", ()), ("seeds", (-1,)),
    ("eval_attacks", ("pgd", "cw")), ("robustness", "fgsm"), ("methods", ("nope",)),
    ("metrics", ()), ("backend", "dask"), ("workers", 0), ("threads", 0), ("bootstrap", 10),
    ("gpus_per_job", -1.0), ("dataset", "imagenet"), ("reference_eps", 0.0), ("out_dir", ""),
    ("ray_address", 3), ("epochs", 0), ("eval_n", 0)])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        rvi.SweepConfig(**{field: value})


def test_jobs_are_typed_json_and_keyed_by_what_determines_them():
    config = rvi.SweepConfig(dataset="synthetic", eps=(0.0, 0.3), seeds=(0, 1), cache_dir="/c")
    jobs = make_jobs(config)
    assert [(j.eps, j.seed) for j in jobs] == [(0.3, 0), (0.3, 1), (0.0, 0), (0.0, 1)]
    assert all(isinstance(job, SweepJob) for job in jobs)
    stored = [job.to_dict() for job in jobs]
    assert json.loads(json.dumps(stored)) == stored
    assert SweepJob(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored[0].items()}) \
        == jobs[0]
    data = rvi.load_dataset("synthetic")
    assert [job.model_key for job in jobs] == [
        rvi.models.cache.cache_key(data, "lenet", sweep_recipe(job.eps, job.seed)) for job in jobs]
    key = record_key(jobs[0])
    same = dataclasses.replace(jobs[0], device="cuda", cache_dir="/d", threads=4)
    assert record_key(same) == key
    assert record_key(dataclasses.replace(jobs[0], eval_n=7)) != key
    assert record_key(dataclasses.replace(jobs[0], model_key="other model")) != key
    assert record_path("out", jobs[0], key).name == f"synthetic-lenet-eps0.3-seed0-{key}.json.gz"


def test_cli_flags_map_to_fields():
    from rvi.cli import _build_parser, _merged_config

    args = _build_parser().parse_args(["sweep", "--eps", "0", "0.1", "--seeds", "3",
                                       "--backend", "ray", "--workers", "3", "--no-download",
                                       "--ray-address", "auto", "--eval-n", "50"])
    assert _merged_config(rvi.SweepConfig, args) == rvi.SweepConfig(
        eps=(0.0, 0.1), seeds=(3,), backend="ray", workers=3, download=False,
        ray_address="auto", eval_n=50)


# --- running jobs ---------------------------------------------------------------------------

def test_sweep_records(tiny_sweep):
    config, result = tiny_sweep
    assert len(result.records) == 4 and result.failed == []
    assert len(list((Path(config.out_dir) / "jobs").glob("*.json.gz"))) == 4
    accuracy = result.accuracy
    rows = accuracy[(accuracy["eps"] == 0.1) & (accuracy["seed"] == 0)]
    assert set(zip(rows["attack"], rows["eval_eps"])) == {
        ("clean", 0.0), ("pgd", 0.3), ("fgsm", 0.3), ("pgd", 0.1), ("fgsm", 0.1)}
    assert set(rows["n"]) == {32}
    images = result.images()
    assert len(images) == 4 * 2 * 32
    one = images[(images["eps"] == 0.0) & (images["seed"] == 1) & (images["input"] == "natural")]
    assert one["saliency/deletion/clean"].notna().sum() == 4  # faithfulness_n
    mean = result.scores
    mean = mean[(mean["eps"] == 0.0) & (mean["seed"] == 1) & (mean["input"] == "natural")
                & (mean["metric"] == "cosine")]["mean"].item()
    assert mean == pytest.approx(one["saliency/cosine/clean"].mean(), rel=1e-6)
    assert set(result.scores["reference"]) == {"clean", "perturbed"}
    # the first-layer mechanism of every model: a column per model, a row per eps in the tables
    assert result.models["threshold_share"].between(0, 1).all()
    assert result.records[0]["mechanism"]["n"] == 32  # min(MECHANISM_IMAGES, n_test)
    trained = copy.deepcopy(result.records)  # as if every model had trained (none failed)
    for record in trained:
        record["accuracy"][0]["accuracy"] = 0.9
    table = rvi.SweepResult(config, trained).mechanism_table()
    assert table["train eps"].tolist() == ["0", "0.1"] and table["seeds"].tolist() == [2, 2]
    with warnings.catch_warnings():  # 4 made-up models: robustness ties, rho undefined
        warnings.simplefilter("ignore")
        text = rvi.SweepResult(config, trained).to_markdown()
    assert "## First-layer threshold channels" in text


def test_a_rerun_resumes_and_redoes_only_missing_jobs(tiny_sweep, monkeypatch):
    config, first = tiny_sweep
    out = Path(config.out_dir).parent / "resume"
    shutil.copytree(config.out_dir, out)
    removed = sorted((out / "jobs").glob("*eps0.1-seed1-*"))
    removed[0].unlink()
    calls = []
    real = rvi.studies.sweep.run_job
    monkeypatch.setattr(rvi.studies.sweep, "run_job", lambda job: calls.append(job) or real(job))
    again = rvi.run_sweep(dataclasses.replace(config, out_dir=str(out)))
    assert [(j.eps, j.seed) for j in calls] == [(0.1, 1)]
    pd.testing.assert_frame_equal(again.models, first.models)
    pd.testing.assert_frame_equal(again.score_summary, first.score_summary)


def test_a_failed_job_is_retried_once_then_reported(tiny_sweep, monkeypatch, caplog):
    config, first = tiny_sweep
    real, tries = rvi.studies.sweep.run_job, {}

    def flaky(job):
        point = (job.eps, job.seed)
        tries[point] = tries.get(point, 0) + 1
        if point == (0.0, 0) or (point == (0.1, 1) and tries[point] == 1):
            raise RuntimeError(f"boom {point}")
        return real(job)

    monkeypatch.setattr(rvi.studies.sweep, "run_job", flaky)
    out = Path(config.out_dir).parent / "flaky"
    result = rvi.run_sweep(dataclasses.replace(config, out_dir=str(out)))
    assert tries[(0.1, 1)] == 2 and tries[(0.0, 0)] == 2 and tries[(0.1, 0)] == 1
    assert len(result.records) == 3 and len(result.failed) == 1
    failure = result.failed[0]
    assert (failure["job"]["eps"], failure["job"]["seed"]) == (0.0, 0)
    assert "boom" in failure["error"]
    assert "attempt 1 of 2" in caplog.text and "eps=0.1" in caplog.text
    assert "Jobs that failed twice" in result.to_markdown()


def test_local_process_pool_gives_the_same_aggregates(tiny_sweep):
    config, first = tiny_sweep
    pooled = rvi.run_sweep(dataclasses.replace(
        config, workers=2, out_dir=str(Path(config.out_dir).parent / "pool")))
    assert_same_aggregates(pooled, first)


def assert_same_aggregates(a, b):
    for name in ("models", "accuracy", "scores", "accuracy_summary", "score_summary",
                 "correlations"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)
    pd.testing.assert_frame_equal(a.images(), b.images())


def test_cli_sweep(tiny_sweep, capsys):
    from rvi.cli import main

    config, _ = tiny_sweep
    out = Path(config.out_dir).parent / "cli"
    rc = main(["sweep", "--dataset", "synthetic", "--eps", "0", "0.1", "--seeds", "0", "1",
               "--epochs", "1", "--n-test", "32", "--eval-n", "8", "--faithfulness-n", "4",
               "--methods", "saliency", "--metrics", "cosine", "--eval-attacks", "pgd",
               "--robustness", "pgd", "--workers", "1", "--threads", "1", "--quiet",
               "--cache-dir", config.cache_dir, "--out-dir", str(out)])
    assert rc == 0
    assert "# rvi sweep: lenet on synthetic" in capsys.readouterr().out
    assert (out / "tables.md").is_file() and (out / "sweep.json").is_file()
    assert len(rvi.SweepResult.load(out).records) == 4
    (out / "tables.md").unlink()
    assert main(["report", str(out)]) == 0 and (out / "tables.md").is_file()
    assert "# rvi sweep" in capsys.readouterr().out
    rc = main(["sweep", "--dataset", "synthetic", "--backend", "spark"])
    assert rc == 2 and "backend must be one of" in capsys.readouterr().err


def test_committed_sweep_records_keep_their_record_keys():
    """A record's key is a hash of its job and its model's cache key; rvi 0.15's jobs carry that
    key (computed once by make_jobs) and hold the per-cell options as CellOptions, yet every
    committed record's key is what it was, so a committed sweep resumes instead of recomputing."""
    folders = sorted((Path(__file__).parents[1] / "benchmarks" / "results").glob("sweep_*/jobs"))
    paths = [path for folder in folders for path in sorted(folder.glob("*.json.gz"))]
    assert paths
    for path in paths:
        record = read_record(path)
        job = {k: tuple(v) if isinstance(v, list) else v for k, v in record["job"].items()}
        job = SweepJob(**job, model_key=record["model"]["cache_key"])
        assert record_key(job) == record["key"], path.name
        assert path.name.endswith(f"-{record['key']}.json.gz")


def test_a_worker_whose_data_give_another_model_key_refuses_the_job(tiny_sweep):
    """The driver keys each job's model once; a worker whose data or recipe give another key
    (say, another copy of the dataset on a Ray node) must not write a record under that key."""
    config, _ = tiny_sweep
    job = dataclasses.replace(make_jobs(config)[0], model_key="0" * 16)
    with pytest.raises(ValueError, match="expects model key 0{16}, but this process's data"):
        rvi.studies.sweep.run_job(job)
