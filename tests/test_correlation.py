"""Spearman over per-eps means with a seeds-within-eps bootstrap: known answers, scipy, a slow
reference resampler."""

import numpy as np
import pytest
from scipy import stats

from rvi.correlation import _row_spearman, point_spearman


def _sweep(values_per_point: dict):
    points, x, y = [], [], []
    for point, pairs in values_per_point.items():
        for a, b in pairs:
            points.append(point)
            x.append(a)
            y.append(b)
    return np.array(points), np.array(x), np.array(y)


def test_monotone_series_gives_one_and_a_collapsed_interval():
    # seeds spread less than the gaps between points: every resample keeps the order
    data = {e: [(e + d, 2 * e + d) for d in (0.0, 0.001, 0.002)] for e in (0.0, 0.1, 0.2, 0.3)}
    out = point_spearman(*_sweep(data), resamples=300)
    assert out["rho"] == 1 and out["ci_low"] == 1 and out["ci_high"] == 1
    assert out["points"] == 4 and out["models"] == 12
    points, x, y = _sweep(data)
    assert point_spearman(points, x, -y, resamples=300)["rho"] == -1


def test_estimate_is_scipys_spearman_of_the_point_means():
    rng = np.random.default_rng(1)
    points = np.repeat(np.arange(6), 3)
    x, y = rng.normal(size=18), rng.normal(size=18)
    means = [np.array([v[points == p].mean() for p in range(6)]) for v in (x, y)]
    out = point_spearman(points, x, y, resamples=200)
    assert out["rho"] == pytest.approx(stats.spearmanr(*means).statistic)
    assert out["ci_low"] <= out["rho"] <= out["ci_high"]


def test_one_seed_per_point_has_no_resampling_spread():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=5), rng.normal(size=5)
    out = point_spearman(np.arange(5), x, y, resamples=100)
    assert out["ci_low"] == out["ci_high"] == pytest.approx(out["rho"])


def test_interval_matches_a_slow_reference_resampler():
    rng = np.random.default_rng(3)
    points = np.repeat([0.0, 0.1, 0.2, 0.3, 0.4], [3, 2, 3, 3, 1])
    x, y = rng.normal(size=12), rng.normal(size=12)
    out = point_spearman(points, x, y, resamples=400, seed=7)
    # the same draws, made one resample at a time, ranked by scipy
    draw_rng = np.random.default_rng(7)
    groups = [np.flatnonzero(points == p) for p in np.unique(points)]
    draws = [g[draw_rng.integers(0, len(g), size=(400, len(g)))] for g in groups]
    rhos = []
    for b in range(400):
        mx = [x[d[b]].mean() for d in draws]
        my = [y[d[b]].mean() for d in draws]
        rhos.append(stats.spearmanr(mx, my).statistic)
    low, high = np.nanpercentile(rhos, [2.5, 97.5])
    assert out["ci_low"] == pytest.approx(low) and out["ci_high"] == pytest.approx(high)


def test_row_spearman_with_ties_matches_scipy():
    a = np.array([[1.0, 2.0, 2.0, 3.0], [4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 2.0, 2.0]])
    b = np.array([[1.0, 3.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 1.0, 3.0]])
    expected = [stats.spearmanr(a[i], b[i]).statistic for i in range(3)]
    assert _row_spearman(a, b) == pytest.approx(expected)


def test_degenerate_inputs():
    out = point_spearman([0.0, 0.0], [1.0, 2.0], [3.0, 4.0])
    assert out["points"] == 1 and np.isnan(out["rho"])
    out = point_spearman([0.0, 0.1], [1.0, 2.0], [3.0, 4.0])  # two points: rho, no interval
    assert out["rho"] == pytest.approx(1) and np.isnan(out["ci_low"])
    out = point_spearman([0.0, 0.1, 0.2], [1.0, 2.0, np.nan], [3.0, 4.0, 5.0])  # NaN dropped
    assert out["models"] == 2 and out["points"] == 2
    assert np.isnan(point_spearman([0, 1, 2], [1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["rho"])


@pytest.mark.parametrize("kwargs, message", [
    ({"points": [0, 1], "x": [1.0], "y": [1.0, 2.0]}, "points, x and y"),
    ({"points": [0, 1], "x": [1.0, 2.0], "y": [1.0, 2.0], "resamples": 0}, "resamples"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        point_spearman(**kwargs)
