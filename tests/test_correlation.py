"""Spearman over per-eps means: the permutation p-value against scipy and a brute-force loop, the
parametric interval against the per-point t-interval and a slow reference drawer, ties, bounds,
degenerate and bad inputs."""

import itertools

import numpy as np
import pytest
from scipy import stats

from rvi.analysis.correlation import (PERMUTATIONS, _draw_means, _row_spearman, permutation_p, point_spearman)


def _sweep(values_per_point: dict):
    points, x, y = [], [], []
    for point, pairs in values_per_point.items():
        for a, b in pairs:
            points.append(point)
            x.append(a)
            y.append(b)
    return np.array(points), np.array(x), np.array(y)


def _brute_p(mx, my):
    """Two-sided permutation p by looping over itertools.permutations with scipy's spearmanr."""
    observed = abs(stats.spearmanr(mx, my).statistic)
    hits = [abs(stats.spearmanr(mx, np.asarray(my)[list(perm)]).statistic) >= observed - 1e-12
            for perm in itertools.permutations(range(len(my)))]
    return np.mean(hits)


# --- the permutation p-value --------------------------------------------------------------------

def test_perfectly_monotone_five_points_have_p_two_over_120():
    data = {e: [(e + d, 2 * e + d) for d in (0.0, 0.001, 0.002)] for e in (0.0, 0.1, 0.2, 0.3, 0.4)}
    out = point_spearman(*_sweep(data), resamples=300)
    assert out["rho"] == pytest.approx(1) and out["p"] == pytest.approx(2 / 120)
    points, x, y = _sweep(data)
    assert point_spearman(points, x, -y, resamples=300)["p"] == pytest.approx(2 / 120)
    assert permutation_p(np.arange(7), np.arange(7)) == pytest.approx(2 / 5040)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_p_matches_scipys_permutation_test(seed):
    rng = np.random.default_rng(seed)
    mx, my = rng.normal(size=6), rng.normal(size=6)
    ref = stats.permutation_test((my,), lambda v: stats.spearmanr(mx, v).statistic,
                                 permutation_type="pairings", n_resamples=np.inf,
                                 alternative="two-sided")
    assert permutation_p(mx, my) == pytest.approx(ref.pvalue)


def test_exact_p_with_ties_matches_a_brute_force_loop():
    # an AutoAttack-like axis: four points tied at 0 robust accuracy
    mx = np.array([0.0, 0.0, 0.0, 0.0, 0.0007, 0.019, 0.86])
    my = np.array([0.45, 0.73, 0.82, 0.86, 0.87, 0.89, 0.91])
    assert permutation_p(mx, my) == pytest.approx(_brute_p(mx, my))
    # the best ordering the ties allow: 4! orders of the tied points x 2 signs of 5040
    assert permutation_p(mx, my) == pytest.approx(48 / 5040)
    my_tied = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 0.5])
    assert permutation_p(mx, my_tied) == pytest.approx(_brute_p(mx, my_tied))


def test_monte_carlo_p_beyond_eight_points():
    rng = np.random.default_rng(4)
    mx = np.arange(10.0)
    my = mx + rng.normal(scale=4.0, size=10)
    p = permutation_p(mx, my, seed=3)
    assert p == permutation_p(mx, my, seed=3)
    assert p * (1 + PERMUTATIONS) == pytest.approx(round(p * (1 + PERMUTATIONS)))  # (1 + hits) / (1 + N)
    ref = stats.permutation_test((my,), lambda v: stats.spearmanr(mx, v).statistic,
                                 permutation_type="pairings", n_resamples=20000,
                                 alternative="two-sided", random_state=0)
    assert p == pytest.approx(ref.pvalue, abs=0.015)
    assert permutation_p(mx, mx) == pytest.approx(1 / (1 + PERMUTATIONS))


def test_p_is_nan_without_a_rank_order():
    assert np.isnan(permutation_p([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(permutation_p([1.0], [2.0]))


# --- the parametric interval --------------------------------------------------------------------

def test_one_points_draw_is_its_t_interval_with_the_seeds_covariance():
    rng = np.random.default_rng(5)
    x = rng.normal(size=5)
    y = 2 * x + rng.normal(scale=0.5, size=5)
    drawn = _draw_means(x, y, 200_000, np.random.default_rng(0))
    low, high = stats.t.interval(0.95, 4, loc=x.mean(), scale=stats.sem(x))
    assert np.percentile(drawn[:, 0], [2.5, 97.5]) == pytest.approx([low, high], rel=0.02, abs=0.01)
    # multivariate t with 4 df: covariance (S / n) * 4 / (4 - 2)
    expected = np.cov(np.stack([x, y])) / 5 * 2
    assert np.cov(drawn.T) == pytest.approx(expected, rel=0.05)
    constant = _draw_means(np.full(3, 0.1), y[:3], 100, np.random.default_rng(0))
    assert np.all(constant[:, 0] == np.full(3, 0.1).mean())  # no spread: never moved


def test_interval_does_not_collapse_with_three_seeds():
    # neighbours' t-intervals overlap (half-width 0.05, gap 0.05), but no resample of 3 seeds
    # swaps two points: the former seeds-within-eps bootstrap gave [1.00, 1.00] here
    data = {e: [(e, e + d) for d in (-0.02, 0.0, 0.02)] for e in np.arange(7) * 0.05}
    out = point_spearman(*_sweep(data), resamples=2000)
    assert out["rho"] == pytest.approx(1) and out["p"] == pytest.approx(2 / 5040)
    assert out["ci_low"] < 0.9 and out["ci_high"] == pytest.approx(1)
    assert out["ci_low"] <= out["rho"] <= out["ci_high"]
    assert out["points"] == 7 and out["models"] == 21


def test_seeds_far_tighter_than_the_gaps_keep_the_interval_at_one():
    data = {e: [(e + d, 2 * e + d) for d in (0.0, 0.001, 0.002)] for e in (0.0, 0.1, 0.2, 0.3)}
    out = point_spearman(*_sweep(data), resamples=300)
    assert out["ci_low"] == pytest.approx(1) and out["ci_high"] == pytest.approx(1)


def test_estimate_is_scipys_spearman_of_the_point_means():
    rng = np.random.default_rng(1)
    points = np.repeat(np.arange(6), 3)
    x, y = rng.normal(size=18), rng.normal(size=18)
    means = [np.array([v[points == p].mean() for p in range(6)]) for v in (x, y)]
    out = point_spearman(points, x, y, resamples=200)
    assert out["rho"] == pytest.approx(stats.spearmanr(*means).statistic)
    assert out["p"] == pytest.approx(_brute_p(*means))
    assert out["ci_low"] <= out["rho"] <= out["ci_high"]


def test_interval_matches_a_slow_reference_drawer():
    rng = np.random.default_rng(3)
    points = np.repeat([0.0, 0.1, 0.2, 0.3, 0.4], [3, 2, 3, 4, 2])
    x, y = rng.normal(size=14), rng.normal(size=14)
    out = point_spearman(points, x, y, resamples=300, seed=7)
    # the same random numbers, one draw at a time: mean + sd-scaled t via sum_i g_i (v_i - mean)
    draw_rng = np.random.default_rng(7)
    numbers = []
    for p in np.unique(points):
        n = int((points == p).sum())
        numbers.append((draw_rng.standard_normal((300, n)), draw_rng.chisquare(n - 1, size=300)))
    rhos = []
    for b in range(300):
        mx, my = [], []
        for p, (g, c) in zip(np.unique(points), numbers):
            xs, ys = x[points == p], y[points == p]
            scale = 1 / np.sqrt(len(xs) * c[b])
            mx.append(xs.mean() + scale * sum(gi * (v - xs.mean()) for gi, v in zip(g[b], xs)))
            my.append(ys.mean() + scale * sum(gi * (v - ys.mean()) for gi, v in zip(g[b], ys)))
        rhos.append(stats.spearmanr(mx, my).statistic)
    low, high = np.nanpercentile(rhos, [2.5, 97.5])
    assert out["ci_low"] == pytest.approx(low) and out["ci_high"] == pytest.approx(high)


def test_reproducible_for_a_fixed_seed():
    rng = np.random.default_rng(6)
    points = np.repeat(np.arange(5), 3)
    x, y = points + rng.normal(size=15), points + rng.normal(size=15)
    first = point_spearman(points, x, y, resamples=500, seed=11)
    assert point_spearman(points, x, y, resamples=500, seed=11) == first
    other = point_spearman(points, x, y, resamples=500, seed=12)
    assert other["rho"] == first["rho"] and other["p"] == first["p"]  # exact p: no randomness
    assert (other["ci_low"], other["ci_high"]) != (first["ci_low"], first["ci_high"])


def test_tied_points_stay_tied_and_bounds_clip_the_draws():
    # robust accuracy 0 for every seed at 4 points; the 5th point's seeds are 0, 0, 0.003
    robust = {0: [0, 0, 0], 1: [0, 0, 0], 2: [0, 0, 0], 3: [0, 0, 0], 4: [0, 0, 0.003],
              5: [0.5, 0.52, 0.54], 6: [0.8, 0.85, 0.9]}
    data = {e: [(r, e + 0.01 * s) for s, r in enumerate(rs)] for e, rs in robust.items()}
    free = point_spearman(*_sweep(data), resamples=1000)
    bounded = point_spearman(*_sweep(data), resamples=1000, x_bounds=(0.0, 1.0))
    best = stats.spearmanr([0, 0, 0, 0, 1, 2, 3], range(7)).statistic  # 4 tied: at most 0.91
    assert free["rho"] == pytest.approx(best) == bounded["rho"]
    assert bounded["ci_high"] <= best + 1e-12
    # unbounded draws put point 4 below 0, under the tied points; bounded ones tie it at 0
    assert bounded["ci_low"] > free["ci_low"]


def test_row_spearman_with_ties_matches_scipy():
    a = np.array([[1.0, 2.0, 2.0, 3.0], [4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 2.0, 2.0]])
    b = np.array([[1.0, 3.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 1.0, 3.0]])
    expected = [stats.spearmanr(a[i], b[i]).statistic for i in range(3)]
    assert _row_spearman(a, b) == pytest.approx(expected)


# --- degenerate and bad inputs ------------------------------------------------------------------

def test_degenerate_inputs():
    out = point_spearman([0.0, 0.0], [1.0, 2.0], [3.0, 4.0])
    assert out["points"] == 1 and np.isnan(out["rho"]) and np.isnan(out["p"])
    out = point_spearman([0.0, 0.1], [1.0, 2.0], [3.0, 4.0])  # two points: rho, p = 1, no interval
    assert out["rho"] == pytest.approx(1) and out["p"] == 1 and np.isnan(out["ci_low"])
    out = point_spearman([0.0, 0.1, 0.2], [1.0, 2.0, np.nan], [3.0, 4.0, 5.0])  # NaN dropped
    assert out["models"] == 2 and out["points"] == 2
    assert np.isnan(point_spearman([0, 1, 2], [1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["rho"])


def test_a_point_with_one_seed_has_no_interval():
    rng = np.random.default_rng(2)
    out = point_spearman(np.arange(5), rng.normal(size=5), rng.normal(size=5), resamples=100)
    assert np.isfinite(out["rho"]) and np.isfinite(out["p"])
    assert np.isnan(out["ci_low"]) and np.isnan(out["ci_high"])
    points = np.repeat([0, 1, 2, 3], [3, 3, 1, 3])  # one point with a single seed is enough
    out = point_spearman(points, rng.normal(size=10), rng.normal(size=10), resamples=100)
    assert np.isfinite(out["rho"]) and np.isnan(out["ci_low"])


@pytest.mark.parametrize("kwargs, message", [
    ({"points": [0, 1], "x": [1.0], "y": [1.0, 2.0]}, "points, x and y"),
    ({"resamples": 0}, "resamples must be an integer >= 1, got 0"),
    ({"resamples": True}, "resamples must be an integer >= 1, got True"),
    ({"resamples": 2.5}, "resamples must be an integer >= 1, got 2.5"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"level": 0.0}, r"level must be in \(0.0, 1.0\], got 0.0"),
    ({"level": 95}, r"level must be in \(0.0, 1.0\], got 95"),
    ({"x_bounds": (1.0, 0.0)}, r"x_bounds must be \(low, high\) with low < high, got \(1.0, 0.0\)"),
    ({"x_bounds": 1.0}, "x_bounds must be"),
])
def test_bad_arguments(kwargs, message):
    args = {"points": [0, 1], "x": [1.0, 2.0], "y": [1.0, 2.0], **kwargs}
    with pytest.raises(ValueError, match=message):
        point_spearman(**args)
