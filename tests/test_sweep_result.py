"""SweepResult from hand-built job records: failed models flagged and left out, t-intervals over
seeds, correlations, tables and figures, save/load."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import rvi
from rvi.analysis.stats import holm
from rvi.report.sweep_result import SCORE_CELL, SweepResult

GRID = (0.0, 0.1, 0.2, 0.3, 0.4)
SEEDS = (0, 1, 2)


def fake_record(eps, seed, clean, robust, cosine):
    """The parts of a :func:`rvi.studies.sweep_job.run_job` record that SweepResult reads."""
    return {"job": {"eps": eps, "seed": seed}, "key": f"k{int(eps * 100)}s{seed}",
            "model": {"num_classes": 10, "final_train_accuracy": clean, "checkpoint": "m.pt"},
            "accuracy": [
                {"attack": "clean", "eval_eps": 0.0, "label": "clean", "n": 100, "accuracy": clean},
                {"attack": "autoattack", "eval_eps": 0.3, "label": "AutoAttack eps=0.3", "n": 50,
                 "accuracy": robust}],
            "means": {"natural": {"saliency/cosine/clean": cosine,
                                  "model/alignment_logit/clean": 1.0 + eps},
                      "adversarial": {"saliency/cosine/clean": cosine / 2,
                                      "saliency/cosine/perturbed": None}}}


def make_result(**config):
    """Robustness and cosine rise with eps up to 0.3; eps 0.4 failed to train (as MNIST's)."""
    records = []
    for eps in GRID:
        for seed in SEEDS:
            if eps == 0.4:
                records.append(fake_record(eps, seed, 0.1124, 0.1124, 0.5))
            else:
                d = 0.001 * seed
                records.append(fake_record(eps, seed, 0.99 - eps / 10, eps * 2 + d, 0.6 + eps + d))
    cfg = rvi.SweepConfig(dataset="synthetic", eps=GRID, seeds=SEEDS, eval_eps=(0.3,),
                          methods=("saliency",), metrics=("cosine", "alignment_logit"),
                          bootstrap=200, **config)
    return SweepResult(config=cfg, records=records)


def test_failed_models_are_flagged_and_left_out():
    result = make_result()
    models = result.models
    assert models.loc[models["eps"] == 0.4, "failed"].all()
    assert not models.loc[models["eps"] < 0.4, "failed"].any()
    summary = result.score_summary
    cell = summary[(summary["eps"] == 0.4) & (summary["metric"] == "cosine")
                   & (summary["input"] == "natural")].iloc[0]
    assert cell["seeds"] == 0 and cell["failed_seeds"] == 3 and np.isnan(cell["mean"])
    table = result.accuracy_table().set_index("train eps")
    assert table.loc[0.4, "models"].startswith("FAILED 3/3")
    assert table.loc[0.4, "clean"] == "—" and table.loc[0.1, "models"] == "3/3 ok"
    text = result.to_markdown()
    assert "eps 0.4: 3 of 3 models failed to train** (clean 11.24%" in text


def test_one_failed_seed_leaves_the_others():
    result = make_result()
    result.records[0] = fake_record(0.0, 0, 0.1, 0.0, 100.0)  # eps 0, seed 0 at chance
    summary = result.score_summary
    cell = summary[(summary["eps"] == 0.0) & (summary["metric"] == "cosine")
                   & (summary["input"] == "natural")].iloc[0]
    assert cell["seeds"] == 2 and cell["failed_seeds"] == 1
    assert cell["mean"] == pytest.approx(0.6 + 0.0015)


def test_intervals_are_t_intervals_over_seeds():
    summary = make_result().score_summary
    cell = summary[(summary["eps"] == 0.2) & (summary["metric"] == "cosine")
                   & (summary["input"] == "natural")].iloc[0]
    values = [0.8 + 0.001 * s for s in SEEDS]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                 scale=stats.sem(values))
    assert (cell["mean"], cell["ci_low"], cell["ci_high"]) == pytest.approx((np.mean(values), low, high))
    acc = make_result().accuracy_summary
    row = acc[(acc["eps"] == 0.1) & (acc["attack"] == "autoattack")].iloc[0]
    assert row["mean"] == pytest.approx(0.2 + 0.001) and row["seeds"] == 3


def test_correlations_of_a_monotone_curve():
    corr = make_result().correlations.set_index(["input", "explainer", "metric", "reference"])
    row = corr.loc[("natural", "saliency", "cosine", "clean")]
    assert row["rho_robustness"] == pytest.approx(1) and row["rho_eps"] == pytest.approx(1)
    assert row["rho_robustness_low"] == pytest.approx(1)
    assert row["points"] == 4 and row["models"] == 12  # eps 0.4 left out
    empty = corr.loc[("adversarial", "saliency", "cosine", "perturbed")]  # never scored: NaN
    assert np.isnan(empty["rho_robustness"]) and empty["models"] == 0
    assert "rho vs autoattack accuracy" in make_result().correlation_table().columns


def test_the_robust_models_alone_and_where_the_change_happens():
    """Cosine 0.6 + eps (+ 0.001 seed): from eps 0 to 0.3 it rises by 0.3, a third of it by the
    first robust eps 0.1; without eps 0 three robust points remain (eps 0.4 failed to train)."""
    result = make_result()
    robust = result.robust_only()
    assert robust.config.eps_grid == (0.1, 0.2, 0.3, 0.4)
    assert sorted({r["job"]["eps"] for r in robust.records}) == [0.1, 0.2, 0.3, 0.4]
    corr = robust.correlations.set_index(["input", "explainer", "metric", "reference"])
    assert corr.loc[("natural", "saliency", "cosine", "clean"), "points"] == 3
    change = result.change_by_first_robust_eps().set_index(["explainer", "metric"])
    row = change.loc[("saliency", "cosine")]  # the failed eps 0.4 point is left out
    assert (row["eps 0"], row["eps 0.1"], row["eps 0.3"]) == pytest.approx((0.601, 0.701, 0.901))
    assert row["share by eps 0.1"] == pytest.approx(1 / 3)
    assert change.loc[("model", "alignment_logit"), "share by eps 0.1"] == pytest.approx(1 / 3)
    text = result.to_markdown()
    assert "## Rank correlation among the robust models alone" in text
    assert "## Where the change happens" in text


def test_correlations_carry_permutation_and_holm_p_values():
    result = make_result()
    corr = result.correlations
    tested = corr[np.isfinite(corr["rho_eps"])]
    # 4 perfectly ordered points: exact p 2 / 4!; Holm over the 3 x 2 correlations of the sweep
    assert len(tested) == 3 and tested["rho_robustness_p"].to_numpy() == pytest.approx([2 / 24] * 3)
    assert tested["rho_eps_p_holm"].to_numpy() == pytest.approx(holm([2 / 24] * 6)[:3])
    assert np.isnan(corr.loc[~np.isfinite(corr["rho_eps"]), "rho_eps_p_holm"]).all()
    table = result.correlation_table()
    assert list(table.columns[5:11]) == [
        "rho vs autoattack accuracy", "p (autoattack accuracy)", "Holm p (autoattack accuracy)",
        "rho vs train eps", "p (train eps)", "Holm p (train eps)"]
    assert table.loc[0, "p (train eps)"] == "0.083" and table.loc[0, "Holm p (train eps)"] == "0.5"
    text = result.to_markdown()
    assert "Holm-adjusted over all 6 correlations" in text and "bootstrap" not in text
    assert "Ties on the robustness axis" not in text and result.robustness_ties() == ""


def test_a_sweep_of_failed_models_only_renders_without_tests():
    result = make_result()
    result.records = [r for r in result.records if r["job"]["eps"] == 0.4]
    assert result.correlations.empty and result.correlation_table().empty
    assert "Holm-adjusted over all 0 correlations" in result.to_markdown()


def test_tied_robustness_is_explained():
    result = make_result()
    for i, record in enumerate(result.records):  # AutoAttack breaks every model below eps 0.3
        if record["job"]["eps"] < 0.3:
            result.records[i] = fake_record(record["job"]["eps"], record["job"]["seed"], 0.99,
                                            0.0, 0.6 + record["job"]["eps"])
    note = result.robustness_ties()
    assert "0.00% at train eps 0, 0.1, 0.2 (0.00%: the attack breaks" in note
    assert "at most 0.77 over these 4 points" in note and "p at least 0.5" in note
    assert note in result.to_markdown()
    row = result.correlations.set_index(SCORE_CELL).loc[("natural", "saliency", "cosine", "clean")]
    assert row["rho_robustness"] == pytest.approx(0.7745967) and row["rho_eps"] == pytest.approx(1)


def test_save_and_load(tmp_path):
    result = make_result(out_dir=str(tmp_path / "sweep"))
    folder = result.save()
    for name in ("tables.md", "tables.tex", "scores.csv", "accuracy.csv", "correlations.csv",
                 "models.csv", "summary.json", "sweep.json", "metric_cosine.png",
                 "metric_alignment_logit.png"):
        assert (folder / name).is_file(), name
    summary = json.loads((folder / "summary.json").read_text())
    assert len(summary["models"]) == 15
    # load reads the records sweep.json lists from jobs/
    from rvi.studies.sweep import write_record
    for record in result.records:
        write_record(folder / "jobs" / f"x-{record['key']}.json.gz", record)
    write_record(folder / "jobs" / "x-stale.json.gz", fake_record(0.0, 0, 0.5, 0.5, 9.0))
    loaded = SweepResult.load(folder)
    assert loaded.config == result.config and len(loaded.records) == 15
    pd.testing.assert_frame_equal(loaded.score_summary, result.score_summary)
    with pytest.raises(FileNotFoundError, match="no rvi sweep"):
        SweepResult.load(tmp_path)
