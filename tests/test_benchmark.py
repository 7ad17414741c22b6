import dataclasses
import gzip
import io
import json
import os

import numpy as np
import pandas as pd
import pytest

import rvi
from rvi.scoring import records
from rvi.report import tables as report
from rvi.analysis import stats, verdicts
from rvi.config import AttackConfig, BenchmarkConfig, TrainConfig
from rvi.report.result import combine_seeds

ATTACK = AttackConfig(eps=0.3, alpha=0.1, steps=2)


def tiny_config(tmp_path, **changes):
    fields = dict(dataset="synthetic", natural=TrainConfig(epochs=2, lr=3e-3),
                  robust=TrainConfig(adversarial=True, epochs=2, lr=3e-3, attack=ATTACK),
                  attack=ATTACK, n_test=48, cascade_n=8, randomization_draws=2, grid_images=3,
                  bootstrap=200,
                  cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "out"))
    fields.update(changes)
    return BenchmarkConfig(**fields)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return rvi.run_benchmark(tiny_config(tmp_path_factory.mktemp("bench")))


def test_records_hold_every_cell_image_and_score(result):
    records = result.records
    cells = set(zip(records["model"], records["input"]))
    assert cells == {("natural", "natural"), ("natural", "adversarial"), ("robust", "natural"),
                     ("robust", "adversarial"), ("random_weights", "natural")}
    assert records.groupby(["model", "input"]).size().eq(48).all()
    assert (records["correct"] == (records["prediction"] == records["label"])).all()
    assert (records["target"] == records["label"]).all()  # target="true"
    adversarial = records[records["input"] == "adversarial"]
    assert adversarial["guided_backprop/cosine/perturbed"].notna().all()
    assert records[records["input"] == "natural"]["guided_backprop/cosine/perturbed"].isna().all()
    for metric in ("cosine", "foreground_mass"):
        scores = records[f"guided_backprop/{metric}/clean"]
        assert scores.between(0, 1).all()


def test_summary_intervals_contain_means(result):
    summary = result.to_frame()
    assert {"model", "input", "explainer", "metric", "reference", "mean", "ci_low", "ci_high",
            "n"} <= set(summary.columns)
    assert (summary["ci_low"] <= summary["mean"] + 1e-12).all()
    assert (summary["mean"] <= summary["ci_high"] + 1e-12).all()
    row = summary[(summary["model"] == "robust") & (summary["input"] == "natural")
                  & (summary["explainer"] == "guided_backprop") & (summary["metric"] == "cosine")]
    expected = result.records.query("model == 'robust' and input == 'natural'")[
        "guided_backprop/cosine/clean"].mean()
    assert row["mean"].iloc[0] == pytest.approx(expected)


def test_paired_differences_equal_difference_of_per_image_scores(result):
    records = result.records
    column = "guided_backprop/cosine/clean"
    robust = records.query("model == 'robust' and input == 'natural'").set_index("image")[column]
    natural = records.query("model == 'natural' and input == 'natural'").set_index("image")[column]
    row = result.differences.query(
        "input == 'natural' and explainer == 'guided_backprop' and metric == 'cosine' "
        "and reference == 'clean'").iloc[0]
    assert row["difference"] == pytest.approx(float((robust - natural).mean()), rel=1e-6)
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    assert row["n"] == 48


def test_trivial_explainers_only_compared_on_scale_free_metrics(result):
    controls = result.control_differences
    cascade = verdicts.CASCADING  # the fully randomized end of cascading randomization
    for model in ("natural", "robust"):  # trivial scores are stored once, paired with both
        assert set(controls.query(f"metric == 'cosine' and model == '{model}'")["control"]) == {
            "random weights", "plain gradient", "image", "edge", "noise", cascade}
    assert set(controls.query("metric == 'inner'")["control"]) == {"random weights",
                                                                   "plain gradient", cascade}
    aligned = set(controls.query("metric == 'alignment_logit'")["control"])
    assert aligned == {"random weights", cascade}
    image = controls.query("control == 'image'")
    assert image["role"].tolist() == ["reference" if m in ("cosine", "foreground_mass")
                                      else "required" for m in image["metric"]]
    assert set(controls.query("control == 'plain gradient'")["role"]) == {"method comparison"}


def test_accuracy_and_verdicts(result):
    accuracy = result.accuracy
    assert set(accuracy["attack"]) == {"clean", "FGSM eps=0.3", ATTACK.label}
    assert accuracy["accuracy"].between(0, 1).all()
    adversarial = result.records.query("model == 'natural' and input == 'adversarial'")
    pgd = accuracy.query(f"model == 'natural' and attack == '{ATTACK.label}'")["accuracy"].iloc[0]
    assert adversarial["correct"].mean() == pytest.approx(pgd)  # same attack, same seed
    decided = [m for m in result.config.metrics if rvi.METRICS[m].verdict]
    assert [line.split(" ")[0] for line in result.verdicts] == \
        [m for m in rvi.METRICS if m in decided]  # raw deletion/insertion: no verdict
    family = int(result.to_markdown().split("Holm over ")[1].split(" ")[0])
    assert family == len(decided)
    for line in result.verdicts:  # faithfulness: no random-weights control; trivial maps are
        if rvi.METRICS[line.split(" ")[0]].family == "faithfulness":
            assert "random weights" not in line


def test_markdown_latex_csv(result):
    text = result.to_markdown()
    for heading in ("## Accuracy", "## Cleanliness of guided_backprop maps", "## Verdicts",
                    "## Robust - natural", "## Layer randomization, cascading",
                    "## Layer randomization, independent", "## Model-randomization test"):
        assert heading in text
    assert "robust model, adversarial input" in text
    assert "\\begin{tabular}" in result.to_latex()
    frame = pd.read_csv(io.StringIO(result.to_csv()))
    assert len(frame) == len(result.summary)


def test_json_round_trip(result):
    again = rvi.BenchmarkResult.from_json(result.to_json())
    assert again.config == result.config
    pd.testing.assert_frame_equal(again.records, result.records)
    pd.testing.assert_frame_equal(again.accuracy, result.accuracy)
    pd.testing.assert_frame_equal(again.cascading, result.cascading)
    assert again.to_markdown() == result.to_markdown()
    with pytest.raises(ValueError, match="not an rvi benchmark result"):
        rvi.BenchmarkResult.from_json(json.dumps({"format": "other"}))


def test_save_is_atomic_and_never_overwrites_without_permission(result, tmp_path):
    folder = tmp_path / "result"
    result.save(folder)
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    names = {p.name for p in folder.iterdir()}
    assert {"result.json.gz", "tables.md", "summary.csv", "summary.json", "tables.tex",
            "saliency_grid.png", "scores.png", "accuracy.png", "cascading.png"} <= names
    before = (folder / "tables.md").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a result"):
        result.save(folder)
    assert (folder / "tables.md").read_bytes() == before
    result.save(folder, overwrite=True, figures=False)
    assert not (folder / "scores.png").exists()  # rvi's own stale figures go
    assert [p.name for p in tmp_path.iterdir()] == ["result"]  # no staging folders left
    loaded = rvi.BenchmarkResult.load(folder)
    pd.testing.assert_frame_equal(loaded.records, result.records)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["verdicts"] == result.verdicts

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="is not an rvi result"):
        result.save(mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "precious"


def test_trained_models_are_cached_and_a_changed_recipe_retrains(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, n_test=12, controls=("image",), metrics=("cosine",),
                         methods=("saliency",), eval_attacks=("fgsm",))
    first = rvi.run_benchmark(config)
    cached = sorted((tmp_path / "cache").iterdir())
    assert len(cached) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was retrained")

    monkeypatch.setattr("rvi.models.cache.train_model", no_training)
    second = rvi.run_benchmark(config)
    pd.testing.assert_frame_equal(first.records, second.records)
    changed = tiny_config(tmp_path, n_test=12, controls=("image",), metrics=("cosine",),
                          methods=("saliency",), eval_attacks=("fgsm",),
                          natural=TrainConfig(epochs=1, lr=3e-3))
    with pytest.raises(AssertionError, match="retrained"):
        rvi.run_benchmark(changed)


@pytest.mark.parametrize("eval_n, expected_n", [(None, 12), (5, 5)])
def test_costly_attacks_run_on_the_first_eval_n_images(tmp_path, eval_n, expected_n):
    config = tiny_config(tmp_path, n_test=12, controls=("image",), metrics=("cosine",),
                         methods=("saliency",), eval_attacks=("fgsm", "pgd-2x2"), eval_n=eval_n)
    accuracy = rvi.run_benchmark(config).accuracy
    assert not accuracy.duplicated(["seed", "model", "attack"]).any()
    assert set(accuracy["attack"]) == {"clean", "FGSM eps=0.3",
                                       "PGD-2 eps=0.3 alpha=0.375 x2 restarts"}
    by_attack = accuracy.groupby("attack")["n"].max()
    assert by_attack["clean"] == 12 and by_attack["FGSM eps=0.3"] == 12
    assert by_attack["PGD-2 eps=0.3 alpha=0.375 x2 restarts"] == expected_n


def test_eval_attacks_in_both_norms_in_one_accuracy_table(tmp_path):
    config = tiny_config(tmp_path, n_test=12, controls=("image",), metrics=("cosine",),
                         methods=("saliency",), eval_attacks=("pgd", "pgd@L2", "pgd-2x2@L2"),
                         eval_n=5)
    accuracy = rvi.run_benchmark(config).accuracy
    n = accuracy.groupby("attack")["n"].max().to_dict()
    assert n == {"clean": 12, "PGD-2 eps=0.3 alpha=0.1": 12, "PGD-7 L2 eps=2 alpha=0.5": 12,
                 "PGD-2 L2 eps=2 alpha=2.5 x2 restarts": 5}
    for _, model in accuracy.groupby(["seed", "model"]):
        by_attack = model.set_index("attack")["accuracy"]
        assert (by_attack.drop("clean") <= by_attack["clean"]).all()


@pytest.mark.parametrize("transfer, expected",
                         [(True, ["robust", "natural"]), (False, ["natural", "robust"])])
def test_transfer_attacks_use_the_other_model(tmp_path, monkeypatch, transfer, expected):
    """The attack stage must attack the *other* model with transfer=True (spied, not read off
    a header)."""
    import rvi.studies.benchmark as bench
    import rvi.scoring.pipeline as pipeline

    kinds, made = {}, {}
    real_get, real_attack = bench.get_trained_model, pipeline.attack_part

    def spy_get(data, architecture, recipe, *args, **kwargs):
        model, history, path = real_get(data, architecture, recipe, *args, **kwargs)
        kinds[id(model)] = "robust" if recipe.adversarial else "natural"
        return model, history, path

    def spy_attack(model, images, labels, part, attack_config, **kwargs):
        adversarial = real_attack(model, images, labels, part, attack_config, **kwargs)
        if attack_config == ATTACK:  # the benchmark attack (not the accuracy table's FGSM)
            made[kinds[id(model)]] = adversarial
        return adversarial

    monkeypatch.setattr(bench, "get_trained_model", spy_get)
    monkeypatch.setattr(pipeline, "attack_part", spy_attack)
    config = tiny_config(tmp_path, n_test=12, controls=("image",), metrics=("cosine",),
                         methods=("saliency",), eval_attacks=("fgsm",), transfer=transfer)
    result = rvi.run_benchmark(config)
    shown = result.examples["adversarial"]  # the first images each model's cell was given
    for kind, source in zip(("natural", "robust"), expected):
        made_against = made[source][:config.grid_images, 0].numpy()
        np.testing.assert_allclose(np.array(shown[kind]), made_against, atol=1e-4)
    assert not np.allclose(made["natural"], made["robust"])  # else the check shows nothing
    assert ("transferred from the other model" in result.to_markdown()) == transfer


def test_several_seeds_report_the_spread_over_seeds(tmp_path):
    config = tiny_config(tmp_path, n_test=12, controls=("image",), metrics=("cosine",),
                         methods=("saliency",), eval_attacks=("fgsm",), seeds=(0, 1))
    result = rvi.run_benchmark(config)
    assert sorted(result.records["seed"].unique()) == [0, 1]
    assert len(list((tmp_path / "cache").iterdir())) == 4  # two models per seed
    summary = result.to_frame()
    assert (summary["n"] == 24).all() and (summary["seeds"] == 2).all()
    assert summary["seed_std"].notna().all()
    text = result.to_markdown()
    assert "mean ± sd over seeds" in text and " ± " in text


def test_verdicts_follow_the_numbers():
    rng = np.random.default_rng(0)
    n = 200
    base = rng.uniform(0.5, 0.6, n)
    rows = []
    for model, shift in (("natural", 0.0), ("robust", 0.1), ("random_weights", 0.1)):
        rows.append(pd.DataFrame({"seed": 0, "model": model, "input": "natural",
                                  "image": np.arange(n), "m/cosine/clean": base + shift,
                                  "noise/cosine/clean": base - 0.3}))
    records = pd.concat(rows, ignore_index=True)
    diffs = stats.model_differences(records, resamples=200)
    controls = verdicts.control_differences(records, "m", 200)
    (line,) = verdicts.verdicts(diffs, controls, "m")
    assert line.startswith("cosine (m, natural input): robust cleaner than natural by +0.1")
    assert "not distinguishable from the random-weights control" in line
    assert "robust not above: random weights" in line and "noise" not in line.split("not above")[1]


@pytest.mark.parametrize("changes, message", [
    ({"methods": ("gradcam",)}, "methods entry must be one of"),
    ({"metrics": ()}, "metrics must be a non-empty tuple"),
    ({"eval_attacks": ("pgd-abc",)}, "eval_attacks entry must be fgsm, pgd, pgd-STEPSxRESTARTS"),
    ({"natural": TrainConfig(adversarial=True)}, "natural must have adversarial=False"),
    ({"n_test": 0}, "n_test must be an integer >= 1, got 0"),
    ({"target": "random"}, "target must be one of true, predicted; got 'random'"),
    ({"seeds": ()}, "seeds must be a non-empty tuple"),
])
def test_bad_benchmark_config(tmp_path, changes, message):
    with pytest.raises(ValueError) as err:
        tiny_config(tmp_path, **changes)
    assert message in str(err.value)


def test_n_test_larger_than_the_test_set(tmp_path):
    with pytest.raises(ValueError, match="n_test must be at most 256 for synthetic, got 300"):
        rvi.run_benchmark(tiny_config(tmp_path, n_test=300))


def test_multi_seed_header_names_every_seed_and_no_single_seed(tmp_path):
    config = tiny_config(tmp_path, seeds=(0, 1, 2))
    header = report._header(rvi.BenchmarkResult(config, pd.DataFrame(), pd.DataFrame()))
    assert "seed 0" not in header and "seeds 0, 1, 2" in header
    assert config.natural.label.endswith("seed 0") and "seed" not in config.natural.recipe_label


def test_overwrite_keeps_files_rvi_did_not_write(result, tmp_path):
    folder = tmp_path / "result"
    result.save(folder)
    (folder / "notes.txt").write_text("my notes")
    (folder / "extra").mkdir()
    (folder / "tables.md").write_text("stale")
    result.save(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "my notes" and (folder / "extra").is_dir()
    assert (folder / "tables.md").read_text() == result.to_markdown()
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # no temporary files left
    # rvi report (load + save with overwrite) keeps them too
    from rvi.cli import main
    records = (folder / "result.json.gz").read_bytes()
    (folder / "tables.md").write_text("stale")
    assert main(["report", str(folder)]) == 0
    assert (folder / "notes.txt").read_text() == "my notes"
    # it re-renders the tables from the records and leaves the records file as it was
    assert (folder / "tables.md").read_text() == result.to_markdown()
    assert (folder / "result.json.gz").read_bytes() == records


def test_save_without_records_needs_an_existing_record_file(result, tmp_path):
    with pytest.raises(ValueError, match="records=False keeps the record file, but .* has no"):
        result.save(tmp_path / "new", records=False)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:len(raw) // 2], "is not a readable gzip file"),
    (lambda raw: gzip.compress(b'{"format": "rvi-result-1", "config": '), "holds invalid JSON"),
    (lambda raw: gzip.compress(json.dumps({"format": "rvi-result-1", "config": {}}).encode()),
     "is not a complete rvi result: missing key"),
    (lambda raw: gzip.compress(b"[1, 2]"), "not an rvi benchmark result"),
])
def test_corrupt_result_names_the_file_and_the_problem(result, tmp_path, damage, message):
    folder = tmp_path / "result"
    result.save(folder, figures=False)
    path = folder / "result.json.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=message) as info:
        rvi.BenchmarkResult.load(folder)
    assert str(path) in str(info.value)


def test_latex_tables_escape_special_characters(result):
    tex = result.to_latex()
    body = tex.replace(r"\%", "").replace(r"\_", "").replace(r"$\pm$", "")
    assert "%" not in body and "_" not in body and "±" not in body
    assert r"guided\_backprop" in tex and r"Accuracy (\%)" in tex and r"95\% CI" in tex
    assert report.tex_escape("a_b & 5% {x} #1 $ ~ ^ \\") == \
        r"a\_b \& 5\% \{x\} \#1 \$ \textasciitilde{} \textasciicircum{} \textbackslash{}"


def test_seed_means_are_the_per_seed_cell_means(result):
    table = result.seed_means()
    row = table.query("model == 'robust' and input == 'adversarial' and "
                      "explainer == 'guided_backprop' and metric == 'cosine' and "
                      "reference == 'perturbed'").iloc[0]
    cell = result.records.query("model == 'robust' and input == 'adversarial'")
    assert row["mean"] == pytest.approx(float(cell["guided_backprop/cosine/perturbed"].mean()))
    assert row["n"] == len(cell) == 48
    assert not table.query("input == 'natural'")["reference"].eq("perturbed").any()


def test_result_names_its_model_set_and_describes_the_trained_models(result):
    assert result.model_set == records.NATURAL_ROBUST
    info = result.model_info
    assert list(info["model"]) == ["natural", "robust"] and set(info["seed"]) == {0}
    assert (info["parameters"] > 0).all() and info["fingerprint"].str.len().eq(64).all()
    assert set(zip(result.differences["model"], result.differences["versus"])) == {
        ("robust", "natural")}


def test_results_on_disjoint_seeds_combine_into_one_run(result, tmp_path):
    """Seed 0 (the module's run) + seed 1 (another run, another cache) = one run on seeds 0, 1:
    the same records and tables; only the wall time differs."""
    both = rvi.run_benchmark(tiny_config(tmp_path, seeds=(0, 1)))
    second = rvi.run_benchmark(tiny_config(tmp_path, seeds=(1,)))
    combined = combine_seeds([result, second])
    assert combined.config.seeds == (0, 1)
    pd.testing.assert_frame_equal(combined.records, both.records)
    pd.testing.assert_frame_equal(combined.accuracy, both.accuracy)
    pd.testing.assert_frame_equal(combined.cascading, both.cascading)

    def tables(r):
        return [line for line in r.to_markdown().splitlines() if "wall time" not in line]

    assert tables(combined) == tables(both)
    assert combined.meta["timings_seconds"]["total"] == pytest.approx(
        result.meta["timings_seconds"]["total"] + second.meta["timings_seconds"]["total"], abs=0.02)
    with pytest.raises(ValueError, match="disjoint seeds"):
        combine_seeds([result, both])
    other = dataclasses.replace(second, config=tiny_config(tmp_path, seeds=(1,), n_test=40))
    with pytest.raises(ValueError, match="config differs in n_test"):
        combine_seeds([result, other])


def test_each_recipe_is_resolved_once_per_run(tmp_path, monkeypatch):
    """check_run resolves each (kind, seed) recipe once; the estimate, the cache key and training
    use that result (resolving a resolved recipe returns it untouched)."""
    calls = []
    resolved = TrainConfig.resolved
    monkeypatch.setattr(TrainConfig, "resolved",
                        lambda self, *a, **k: calls.append(self.seed) or resolved(self, *a, **k))
    config = tiny_config(tmp_path, seeds=(0, 1), n_test=16, eval_attacks=("pgd",))
    rvi.run_benchmark(config, progress=True)
    assert sorted(calls) == [0, 0, 1, 1]  # natural and robust of each seed, trained here
    calls.clear()
    rvi.run_benchmark(config)  # from the cache
    assert sorted(calls) == [0, 0, 1, 1]
