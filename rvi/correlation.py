"""Rank correlation along a sweep, with an interval that resamples seeds within each eps point.

The statistic is Spearman's rho between two per-point means (e.g. robust accuracy and a metric,
each averaged over the seeds of one training eps) across the eps points: the shape of the
robustness-interpretability curve. Its interval is a stratified percentile bootstrap: in each
resample every eps point draws as many of its own seeds as it has, with replacement (the same
draw for both quantities, so they stay paired), the per-point means are recomputed, and so is
rho. Every eps point is present in every resample, so the statistic always has the same points;
with one seed per point the interval collapses to the estimate. Resamples in which one side's
means are all tied (rho undefined) are left out of the percentiles.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .stats import LEVEL


def _check(points, x, y) -> tuple:
    points, x, y = (np.asarray(a) for a in (points, x, y))
    x, y = x.astype(np.float64), y.astype(np.float64)
    if points.ndim != 1 or x.shape != points.shape or y.shape != points.shape:
        raise ValueError(f"points, x and y must be 1-D of one length, got shapes {points.shape}, "
                         f"{x.shape}, {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    return points[keep], x[keep], y[keep]


def _row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of (B, G) arrays (average ranks; NaN for a constant row)."""
    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=1) / np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))


def point_spearman(points, x, y, resamples: int = 2000, seed: int = 0,
                   level: float = LEVEL) -> dict:
    """Spearman's rho between the per-point means of ``x`` and ``y``, with a seeds-within-points
    bootstrap interval (module docstring).

    Shape: points, x, y: (n,) — one entry per model: its point (e.g. training eps), and two
    measurements of it. Models with a non-finite x or y are left out.

    Returns:
        ``{"rho", "ci_low", "ci_high", "points", "models"}``; rho is NaN with fewer than 2
        points or a constant mean, and the interval NaN with fewer than 3 points.
    """
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}")
    points, x, y = _check(points, x, y)
    groups = [np.flatnonzero(points == p) for p in np.unique(points)]
    out = {"rho": np.nan, "ci_low": np.nan, "ci_high": np.nan, "points": len(groups),
           "models": len(x)}
    if len(groups) < 2:
        return out
    mx = np.array([x[g].mean() for g in groups])
    my = np.array([y[g].mean() for g in groups])
    if np.ptp(mx) == 0 or np.ptp(my) == 0:
        return out
    out["rho"] = float(stats.spearmanr(mx, my).statistic)
    if len(groups) < 3:
        return out
    rng = np.random.default_rng(seed)
    bx = np.empty((resamples, len(groups)))
    by = np.empty((resamples, len(groups)))
    for j, g in enumerate(groups):
        draw = g[rng.integers(0, len(g), size=(resamples, len(g)))]
        bx[:, j], by[:, j] = x[draw].mean(axis=1), y[draw].mean(axis=1)
    rho = _row_spearman(bx, by)
    if np.isfinite(rho).any():
        low, high = np.nanpercentile(rho, [50 * (1 - level), 50 * (1 + level)])
        out["ci_low"], out["ci_high"] = float(low), float(high)
    return out
