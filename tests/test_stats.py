"""rvi.analysis.stats and rvi.analysis.verdicts: seed-level intervals, the bootstrap, Holm and the verdict
rule."""

from pathlib import Path

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from rvi.analysis import stats, verdicts
from rvi.config import AttackConfig, dataset_attack
from rvi.scoring.records import ScoreKey

DOCS = Path(__file__).resolve().parents[1] / "docs"
CELLS = (("natural", "natural"), ("robust", "natural"), ("random_weights", "natural"))


def make_records(shifts: dict, seed_effects=None, n: int = 60, noise: float = 0.05,
                 rng_seed: int = 0) -> pd.DataFrame:
    """Records for ``len(seed_effects)`` seeds and ``n`` images per seed; ``shifts`` maps
    ``(model, column)`` to that cell's offset, and the robust model's columns also get the
    per-seed ``seed_effects`` (so robust - natural differs from seed to seed)."""
    rng = np.random.default_rng(rng_seed)
    seed_effects = [0.0] if seed_effects is None else seed_effects
    columns = sorted({column for _, column in shifts})
    frames = []
    for seed, effect in enumerate(seed_effects):
        base = rng.uniform(0.4, 0.6, n)
        for model, input_kind in CELLS:
            data = {c: base + shifts.get((model, c), 0.0) + (effect if model == "robust" else 0.0)
                    + rng.normal(0, noise, n) for c in columns}
            frames.append(pd.DataFrame({"seed": seed, "model": model, "input": input_kind,
                                        "image": np.arange(n), **data}))
    return pd.concat(frames, ignore_index=True)


def accuracy_frame(seeds: int, robust_clean: float = 0.98, robust_attacked: float = 0.9):
    rows = []
    for seed in range(seeds):
        rows += [dict(seed=seed, model="natural", attack="clean", accuracy=0.99, n=100),
                 dict(seed=seed, model="natural", attack="PGD", accuracy=0.0, n=100),
                 dict(seed=seed, model="robust", attack="clean", accuracy=robust_clean, n=100),
                 dict(seed=seed, model="robust", attack="PGD", accuracy=robust_attacked, n=100)]
    return pd.DataFrame(rows)


def cascading_frame(seeds: int, trained: float = 0.6, end: float = 0.3):
    return pd.DataFrame([dict(seed=s, model=m, metric=k, method="m", step=step, layer=layer,
                              mean=value, n=8)
                         for s in range(seeds) for m in ("natural", "robust")
                         for k in ("cosine", "inner")
                         for step, (layer, value) in enumerate((("none", trained), ("fc", 0.45),
                                                                ("conv", end)))])


def verdict_lines(records, seeds: int, **accuracy):
    diffs = stats.model_differences(records, resamples=300)
    controls = verdicts.control_differences(records, "m", 300, cascading_frame(seeds))
    diffs, controls = verdicts.with_holm(diffs, controls, "m")
    return verdicts.verdicts(diffs, controls, "m", accuracy_frame(seeds, **accuracy), "PGD")


CLEAN_STUDY = {("robust", "m/cosine/clean"): 0.2, ("natural", "saliency/cosine/clean"): -0.1,
               ("robust", "saliency/cosine/clean"): -0.1,
               ("natural", "noise/cosine/clean"): -0.3, ("robust", "noise/cosine/clean"): -0.3,
               ("natural", "image/cosine/clean"): 0.45, ("robust", "image/cosine/clean"): 0.45}


# --- (1) coverage of the method-level interval vs the pooled image bootstrap -----------------

def test_seed_interval_covers_the_true_difference_and_the_pooled_bootstrap_does_not():
    delta, sigma_seed, sigma_image, seeds, n, reps = 0.1, 0.1, 0.2, 5, 50, 200
    rng = np.random.default_rng(1)
    # Every replicate study is one score column: 5 seeds x 50 images, both models.
    effects = {m: rng.normal(0, sigma_seed / np.sqrt(2), (seeds, reps)) for m in ("n", "r")}
    frames = []
    for seed in range(seeds):
        base = rng.uniform(0.3, 0.7, (n, 1))
        for model, key, shift in (("natural", "n", 0.0), ("robust", "r", delta)):
            scores = base + shift + effects[key][seed] + rng.normal(0, sigma_image / np.sqrt(2),
                                                                    (n, reps))
            frames.append(pd.DataFrame(scores, columns=[f"m{r}/cosine/clean" for r in range(reps)])
                          .assign(seed=seed, model=model, input="natural", image=np.arange(n)))
    records = pd.concat(frames, ignore_index=True)
    diffs = stats.model_differences(records, resamples=200)
    assert len(diffs) == reps and (diffs["interval"] == stats.SEEDS_INTERVAL).all()
    assert (diffs["seeds"] == seeds).all() and (diffs["n_per_seed"] == n).all()
    new = ((diffs["ci_low"] <= delta) & (delta <= diffs["ci_high"])).mean()
    # The old statistic: a percentile bootstrap over all (seed, image) rows, seeds pooled.
    robust = records[records["model"] == "robust"].sort_values(["seed", "image"])
    natural = records[records["model"] == "natural"].sort_values(["seed", "image"])
    columns = [f"m{r}/cosine/clean" for r in range(reps)]
    pooled = robust[columns].to_numpy() - natural[columns].to_numpy()
    _, low, high = stats.bootstrap_interval(pooled, 500, seed=2)
    old = ((low <= delta) & (delta <= high)).mean()
    print(f"coverage of delta: seed-level t {new:.3f}, pooled image bootstrap {old:.3f}")
    assert 0.90 <= new <= 0.99
    assert old < 0.5


# --- (6), (7): the two intervals against scipy --------------------------------------------------

def test_seed_interval_is_scipy_t_interval_over_per_seed_means():
    records = make_records({("robust", "m/cosine/clean"): 0.1, ("natural", "m/cosine/clean"): 0},
                           seed_effects=[0.05, -0.04, 0.02, 0.0], n=30)
    row = stats.model_differences(records, resamples=200).iloc[0]
    robust = records[records["model"] == "robust"]
    natural = records[records["model"] == "natural"]
    per_seed = [(robust[robust["seed"] == s]["m/cosine/clean"].to_numpy()
                 - natural[natural["seed"] == s]["m/cosine/clean"].to_numpy()).mean()
                for s in range(4)]
    low, high = scipy_stats.t.interval(0.95, 3, loc=np.mean(per_seed),
                                       scale=scipy_stats.sem(per_seed))
    assert row["difference"] == pytest.approx(np.mean(per_seed))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    assert row["p"] == pytest.approx(scipy_stats.ttest_1samp(per_seed, 0.0).pvalue)
    assert row["seeds"] == 4 and row["n"] == 120 and row["n_per_seed"] == 30


def test_vectorized_bootstrap_agrees_with_scipy():
    rng = np.random.default_rng(3)
    values = rng.exponential(1.0, 80)
    mean, low, high = (float(v[0]) for v in stats.bootstrap_interval(values, 4000, 5))
    ref = scipy_stats.bootstrap((values,), np.mean, n_resamples=4000, method="percentile",
                                random_state=np.random.default_rng(6)).confidence_interval
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert mean == pytest.approx(values.mean())
    # Two independent Monte-Carlo estimates of the same quantiles: agree within 0.1 se.
    assert abs(low - ref.low) < 0.1 * se and abs(high - ref.high) < 0.1 * se


def test_bootstrap_shares_one_weight_matrix_across_columns_and_ignores_nan():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(40, 3))
    values[:5, 2] = np.nan
    mean, low, high = stats.bootstrap_interval(values, 500, seed=0)
    # Column 1 is column 0 shifted: with shared weights its interval is shifted exactly.
    shifted = stats.bootstrap_interval(np.c_[values[:, 0], values[:, 0] + 1], 500, seed=0)
    assert shifted[1][1] - shifted[1][0] == pytest.approx(1.0)
    assert mean[2] == pytest.approx(np.nanmean(values[:, 2]))
    assert low[2] < mean[2] < high[2]


def test_one_seed_uses_the_image_bootstrap_and_says_so():
    records = make_records({("robust", "m/cosine/clean"): 0.1, ("natural", "m/cosine/clean"): 0})
    row = stats.model_differences(records, resamples=300).iloc[0]
    assert row["interval"] == stats.IMAGES_INTERVAL and row["seeds"] == 1
    diff = records[records["model"] == "robust"]["m/cosine/clean"].to_numpy() \
        - records[records["model"] == "natural"]["m/cosine/clean"].to_numpy()
    assert row["p"] == pytest.approx(
        2 * scipy_stats.norm.sf(abs(diff.mean()) / scipy_stats.sem(diff)))
    summary = stats.summarize(records, 300)
    assert (summary["interval"] == stats.IMAGES_INTERVAL).all()
    assert summary["seed_std"].isna().all()


# --- (4) Holm ------------------------------------------------------------------------------------

def test_holm_matches_a_hand_computation():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.005])
    # Sorted: 0.005, 0.01, 0.03, 0.04 (m = 4) -> 4*0.005, 3*0.01, 2*0.03, max(0.06, 1*0.04).
    expected = [0.03, 0.06, np.nan, 0.06, 0.02]
    assert np.allclose(stats.holm(p), expected, equal_nan=True)
    assert stats.holm([0.5, 0.9]).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="p-values must be in"):
        stats.holm([1.5])


def test_holm_family_is_what_the_verdicts_check():
    records = make_records(CLEAN_STUDY, seed_effects=[0, 0.01, -0.01])
    diffs = stats.model_differences(records, resamples=200)
    controls = verdicts.control_differences(records, "m", 200, cascading_frame(3))
    diffs, controls = verdicts.with_holm(diffs, controls, "m")
    tested = controls[controls["p_holm"].notna()]
    assert set(tested["model"]) == {"robust"} and set(tested["role"]) == {"required"}
    assert set(tested["control"]) == {"random weights", "noise", verdicts.CASCADING}
    assert set(controls.query("control == 'plain gradient'")["role"]) == {"method comparison"}
    # one metric, one verdict: its p is the largest p of its conditions, and Holm over one
    # verdict leaves it unchanged
    raw = np.r_[diffs.loc[diffs["p_holm"].notna(), "p"], tested["p"]]
    assert np.allclose(np.r_[diffs["p_holm"].dropna(), tested["p_holm"]], raw.max())
    assert diffs["p_holm"].notna().sum() == 1


def test_each_verdict_is_an_intersection_union_test_holm_across_verdicts():
    """Two decided metrics and a descriptive one: one verdict each for cosine and deletion_gain
    (p = the largest p of its conditions), Holm across those two only; raw deletion has none.
    deletion_gain reads the model's output: no random-weights control, and the trivial maps
    are compared in the model's own rows (scored with the model under test)."""
    shifts = dict(CLEAN_STUDY)
    shifts.update({("robust", "m/deletion_gain/clean"): 0.1,
                   ("natural", "saliency/deletion_gain/clean"): -0.2,
                   ("robust", "saliency/deletion_gain/clean"): -0.2,
                   ("natural", "image/deletion_gain/clean"): -0.3,
                   ("robust", "image/deletion_gain/clean"): -0.3,
                   ("random_weights", "m/deletion_gain/clean"): 0.5,
                   ("robust", "m/deletion/clean"): 0.1})
    records = make_records(shifts, seed_effects=[0, 0.01, -0.01, 0.02])
    diffs = stats.model_differences(records, resamples=200)
    controls = verdicts.control_differences(records, "m", 200, cascading_frame(4))
    gain = controls[controls["metric"] == "deletion_gain"]
    assert set(gain["control"]) == {"plain gradient", "image"}  # no random weights
    assert dict(zip(gain["control"], gain["role"])) == {"plain gradient": "method comparison",
                                                        "image": "required"}
    own = records[(records["model"] == "robust")]
    image = own.groupby("seed")["image/deletion_gain/clean"].mean()
    trained = own.groupby("seed")["m/deletion_gain/clean"].mean()
    row = gain[(gain["model"] == "robust") & (gain["control"] == "image")].iloc[0]
    assert row["difference"] == pytest.approx(float((trained - image).mean()))
    diffs, controls = verdicts.with_holm(diffs, controls, "m")
    largest = {}
    for metric in ("cosine", "deletion_gain"):
        main = diffs[(diffs["metric"] == metric) & diffs["p_holm"].notna()]
        required = controls[(controls["metric"] == metric) & controls["p_holm"].notna()]
        assert len(main) == 1
        largest[metric] = max(main["p"].max(), required["p"].max())
    expected = dict(zip(largest, stats.holm(np.array(list(largest.values())))))
    for metric, p in expected.items():
        assert diffs.loc[diffs["metric"] == metric, "p_holm"].dropna().tolist() == \
            pytest.approx([p])
    assert diffs.loc[diffs["metric"] == "deletion", "p_holm"].isna().all()
    lines = verdicts.verdicts(diffs, controls, "m", accuracy_frame(4), "PGD")
    assert [line.split(" ")[0] for line in lines] == ["cosine", "deletion_gain"]
    assert all("Holm over 2 verdicts" in line for line in lines)


# --- the verdict rule ---------------------------------------------------------------------------

def test_clean_study_with_five_seeds_is_supported_for_the_methods():
    records = make_records(CLEAN_STUDY, seed_effects=[0, 0.01, -0.01, 0.02, 0.0])
    (line,) = verdict_lines(records, 5)
    assert line.startswith("cosine (m, natural input): robust cleaner than natural by +0.2")
    assert "→ supported for the training methods [5 seeds, Holm over" in line
    assert "reference (the cleanest map by the metric's definition; reported, not required): " \
        "image" in line


def test_per_seed_differences_that_change_sign_are_not_supported():
    records = make_records(CLEAN_STUDY, seed_effects=[-0.1, -0.35, 0.1], n=200)
    (line,) = verdict_lines(records, 3)
    assert "robust and natural not distinguishable" in line
    assert "not supported (fails: difference" in line


@pytest.mark.parametrize("seeds", [1, 2])
def test_fewer_than_three_seeds_speak_of_the_given_models_only(seeds):
    records = make_records(CLEAN_STUDY, seed_effects=[0.0, 0.01][:seeds])
    (line,) = verdict_lines(records, seeds)
    assert "about the given models only" in line and "for the training methods" not in line
    assert f"[{seeds} seed" in line


def test_reference_map_and_method_comparison_are_reported_but_not_required():
    """The image map is cosine's cleanest map (a reference) and the plain gradient compares
    methods: the robust model below both still gets a supported verdict."""
    study = {**CLEAN_STUDY, ("robust", "saliency/cosine/clean"): 0.5}  # gradient above the map
    records = make_records(study, seed_effects=[0, 0.01, -0.01])
    controls = verdicts.control_differences(records, "m", 200)
    image = controls[controls["control"] == "image"]
    assert (image["role"] == "reference").all() and (image["difference"] < 0).all()
    gradient = controls[(controls["control"] == "plain gradient") & (controls["model"] == "robust")]
    assert (gradient["role"] == "method comparison").all() and (gradient["difference"] < 0).all()
    (line,) = verdict_lines(records, 3)
    assert "robust above every required control" in line and "→ supported" in line


def test_scale_dependent_metric_is_not_compared_with_trivial_explainers():
    shifts = {("robust", "m/inner/clean"): 5.0, ("natural", "noise/inner/clean"): 1.0,
              ("natural", "image/inner/clean"): 1.0, ("natural", "saliency/inner/clean"): 1.0}
    controls = verdicts.control_differences(make_records(shifts), "m", 200)
    assert set(controls["control"]) == {"random weights", "plain gradient"}


def test_cascading_end_and_accuracy_rules_are_checked():
    records = make_records(CLEAN_STUDY, seed_effects=[0, 0.01, -0.01])
    diffs = stats.model_differences(records, resamples=200)
    flat = verdicts.control_differences(records, "m", 200, cascading_frame(3, 0.6, 0.6 + 1e-3))
    (line,) = verdicts.verdicts(diffs, flat, "m", accuracy_frame(3), "PGD")
    assert "the metric does not depend on the weights here" in line and "fails: cascading" in line
    (line,) = verdict_lines(records, 3, robust_clean=0.9)  # the clean cost is reported only
    assert "meets the rule; clean cost +9.0 points" in line and "→ supported" in line
    (line,) = verdict_lines(records, 3, robust_attacked=0.05)
    assert "fails the rule" in line and "fails: accuracy" in line


def test_docs_hold_every_rule_verbatim():
    """docs/metrics.md's numbered reading rule is VERDICT_RULES, clause by clause, in order."""
    raw = (DOCS / "metrics.md").read_text()
    text = " ".join(raw.split())
    section = raw[raw.index("**Reading rule.**"):raw.index("Details of each rule:")]
    items = re.findall(r"^(\d+)\. \*\*(\w+)\*\*: (.+)$", section, flags=re.M)
    assert [(int(n), key, clause) for n, key, clause in items] == \
        [(i, r.key, r.text) for i, r in enumerate(verdicts.VERDICT_RULES, 1)]
    assert verdicts.RANDOMIZATION_RULE in text


def _randomization_rows(excess: list, model: str = "robust", sd: float = 0.1,
                        floor: float = 0.4) -> pd.DataFrame:
    """Cascading rows whose last step has the given per-seed mean excess of the same-image
    Spearman similarity over the other-image floor."""
    rows = []
    for seed, end in enumerate(excess):
        for step, value in ((0, 1.0), (1, (1.0 + floor + end) / 2), (2, floor + end)):
            for kind, mean in (("similarity", value), ("floor", floor),
                               ("excess", value - floor)):
                rows.append(dict(seed=seed, model=model, mode="cascading", method="m",
                                 step=step, layer=str(step), kind=kind, metric="spearman",
                                 mean=mean, sd=sd, n=400))
        rows.append(dict(seed=seed, model=model, mode="cascading", method="m", step=0,
                         layer="0", kind="edge map", metric="spearman", mean=0.6, sd=sd, n=400))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("excess, outcome", [
    ([0.01, -0.01, 0.0, 0.02, -0.02], "passes"),     # no closer than another image's map
    ([0.30, 0.28, 0.32, 0.31, 0.29], "fails"),       # randomized maps keep this image's structure
    ([0.00, 0.10, 0.05, 0.02, 0.08], "inconclusive"),
])
def test_randomization_test_outcomes(excess, outcome):
    test = verdicts.randomization_test(_randomization_rows(excess))
    row = test.iloc[0]
    assert row["outcome"] == outcome and row["seeds"] == 5
    expected = scipy_stats.t.interval(0.95, 4, loc=np.mean(excess), scale=scipy_stats.sem(excess))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(expected)
    assert row["floor"] == pytest.approx(0.4) and row["edge_map"] == pytest.approx(0.6)
    assert row["same"] == pytest.approx(0.4 + np.mean(excess))


def test_randomization_test_with_one_seed_uses_the_images():
    test = verdicts.randomization_test(_randomization_rows([0.02], sd=0.5))
    row = test.iloc[0]
    half = 1.96 * 0.5 / np.sqrt(400)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.02 - half, 0.02 + half))
    assert row["seeds"] == 1 and row["interval"] == "images: normal"
    assert row["outcome"] == "inconclusive"  # 0.02 + 0.049 reaches past the margin 0.05


def _drawn(excess_per_seed: list) -> pd.DataFrame:
    """``_randomization_rows`` for several re-initializations: ``excess_per_seed[s][d]`` is seed
    s's excess at draw d."""
    frames = []
    for seed, draws in enumerate(excess_per_seed):
        for draw, excess in enumerate(draws):
            frames.append(_randomization_rows([excess]).assign(seed=seed, draw=draw))
    return pd.concat(frames, ignore_index=True)


def test_one_lucky_draw_does_not_decide_the_randomization_test():
    """One seed, five re-initializations whose excess spreads as measured on mnist-5k LeNets
    (0.004-0.173): the first draw alone would pass; over the draws the outcome is inconclusive,
    with a t interval over the draws."""
    draws = [0.004, 0.173, 0.06, 0.11, 0.03]
    assert verdicts.randomization_test(_randomization_rows(draws[:1], sd=0.01)) \
        .iloc[0]["outcome"] == "passes"
    row = verdicts.randomization_test(_drawn([draws])).iloc[0]
    expected = scipy_stats.t.interval(0.95, 4, loc=np.mean(draws), scale=scipy_stats.sem(draws))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(expected)
    assert row["seeds"] == 1 and row["draws"] == 5 and row["interval"] == stats.DRAWS_INTERVAL
    assert row["outcome"] == "inconclusive"


def test_randomization_draws_are_averaged_within_each_seed():
    """With several seeds the unit is the seed: each seed's draws are averaged first."""
    per_seed = [[0.0, 0.02], [0.3, 0.1], [0.05, 0.05]]
    row = verdicts.randomization_test(_drawn(per_seed)).iloc[0]
    means = [np.mean(d) for d in per_seed]
    expected = scipy_stats.t.interval(0.95, 2, loc=np.mean(means), scale=scipy_stats.sem(means))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(expected)
    assert row["seeds"] == 3 and row["draws"] == 2 and row["interval"] == stats.SEEDS_INTERVAL
    frame = _drawn(per_seed).query("kind == 'excess' and step == 2")
    assert stats.mean_over_draws(frame)["mean"].tolist() == pytest.approx(means)


def test_cascading_end_with_one_seed_uses_the_draws():
    frame = pd.concat([cascading_frame(1, 0.6, end).assign(draw=d)
                       for d, end in enumerate((0.3, 0.35, 0.25))], ignore_index=True)
    records = make_records(CLEAN_STUDY)
    row = verdicts.control_differences(records, "m", 200, frame) \
        .query("control == @verdicts.CASCADING and model == 'robust' and metric == 'cosine'") \
        .iloc[0]
    # trained 0.6 minus the three draws' ends: 0.3, 0.25, 0.35
    expected = scipy_stats.t.interval(0.95, 2, loc=0.3, scale=scipy_stats.sem([0.3, 0.25, 0.35]))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(expected)
    assert row["interval"] == stats.DRAWS_INTERVAL and row["difference"] == pytest.approx(0.3)


def test_accuracy_rule_uses_the_dataset_target_and_reports_the_clean_cost():
    assert verdicts.robust_accuracy_target("mnist", dataset_attack("mnist")) == 0.916
    assert verdicts.robust_accuracy_target("mnist-5k", dataset_attack("mnist-5k")) == 0.80
    assert verdicts.robust_accuracy_target("mnist", AttackConfig(eps=0.2)) is None
    # Croce, Andriushchenko and Hein 2019, Table 1 (PGD training, small CNN, eps 0.1)
    assert verdicts.robust_accuracy_target("fashion-mnist", dataset_attack("fashion-mnist")) == 0.785
    assert verdicts.robust_accuracy_target("mnist", dataset_attack("mnist", "L2")) is None
    frame = accuracy_frame(3, robust_clean=0.92, robust_attacked=0.93)
    met, text = verdicts.accuracy_check(frame, "PGD", target=0.916)
    assert met and text == ("accuracy: robust 93.0% under PGD (target 91.6%), meets the rule; "
                            "clean cost +7.0 points")
    met, text = verdicts.accuracy_check(frame, "PGD", target=0.95)
    assert not met and "fails the rule" in text
    met, text = verdicts.accuracy_check(accuracy_frame(3, robust_attacked=0.08), "PGD")
    assert not met and "+8.0 points under PGD (rule: ≥ +10)" in text


# --- column names, unknown metrics, bad input -----------------------------------------------------

def test_score_key_round_trip_and_other_columns():
    key = ScoreKey.from_column("guided_backprop/cosine/clean")
    assert key == ScoreKey("guided_backprop", "cosine", "clean") and key.column == \
        "guided_backprop/cosine/clean"
    assert ScoreKey.from_column("seed") is None and ScoreKey.from_column(3) is None


def test_metrics_missing_from_the_registry_are_skipped():
    shifts = dict(CLEAN_STUDY)
    shifts[("robust", "m/deletion_auc_new/clean")] = 0.1
    records = make_records(shifts, seed_effects=[0, 0.01, -0.01])
    assert "deletion_auc_new" in set(stats.summarize(records, 200)["metric"])
    controls = verdicts.control_differences(records, "m", 200)
    assert "deletion_auc_new" not in set(controls["metric"])
    lines = verdict_lines(records, 3)
    assert [line.split(" ")[0] for line in lines] == ["cosine"]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"seeds must have shape \(3,\), got \(2,\)"):
        stats.interval_stats(np.zeros((3, 1)), [0, 1])
    with pytest.raises(ValueError, match="resamples must be >= 1, got 0"):
        stats.bootstrap_interval(np.zeros(3), 0)
    with pytest.raises(ValueError, match="pairs and labels must have the same length"):
        stats.paired_stats(make_records({("robust", "m/cosine/clean"): 0}),
                           {"model": "robust"}, {"model": "natural"}, [("a", "a")], [])
