"""Rank correlation along a sweep: Spearman's rho of per-point means, a parametric interval and a
permutation p-value.

**Statistic.** Spearman's rho (average ranks for ties) between two per-point means (e.g. robust
accuracy and a metric, each averaged over the seeds of one training eps) across the points: the
shape of the robustness-interpretability curve.

**Interval: a parametric draw from each point's sampling distribution.** A point with n >= 2
seeds, per-seed pairs (x_i, y_i), means m = (mean x, mean y) and deviations D (n, 2) from m, draws
its pair of means from the bivariate Student-t with n - 1 degrees of freedom, location m and scale
S / n (S = D'D / (n - 1), the seeds' sample covariance): ``m + g D / sqrt(n c)`` with
g ~ N(0, I_n) (1, n) and c ~ chi2(n - 1). Alone, each coordinate is ``mean + sd / sqrt(n) * t``
with t ~ t(n - 1): the sampling distribution behind the point's 95% t-interval; together they keep
the seeds' x-y covariance, so a seed's accuracy and score stay paired. A quantity without spread
at a point (the training eps; an accuracy that is 0 for every seed) is not moved, so points tied
there stay tied and share an average rank in every draw. Drawn x means are clipped to
``x_bounds`` (an accuracy: (0, 1)). Points draw independently; rho is recomputed on every draw
and the interval is the percentile interval of those rhos (draws in which one side is constant,
rho undefined, are left out). Unlike a bootstrap over 3 seeds (10 distinct resamples per point)
it does not collapse to one value when the seeds spread. A point with one seed has no sd: the
interval is then NaN (unknown), as it is with fewer than 3 points.

**p-value: permutation test of "no monotone association across points".** Under H0 every pairing
of the x means with the y means is equally likely. ``p`` is the fraction of permutations of the y
means whose ``|rho|`` reaches the observed ``|rho|`` (less 1e-12 for float ties), two-sided. With
at most :data:`EXACT_POINTS` points all k! permutations are enumerated (exact; with 7 points and
no ties the smallest p is 2 / 5040), else :data:`PERMUTATIONS` seeded random ones give
``(1 + hits) / (1 + PERMUTATIONS)``. The test conditions on the observed means: it asks whether
their ordering could be chance, not how noisy they are (that is the interval).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
from scipy import stats

from .._core.checks import check_int, check_range
from .stats import LEVEL

#: Up to this many points the permutation p-value enumerates every permutation (8! = 40320).
EXACT_POINTS = 8
#: Random permutations of the Monte-Carlo p-value with more points.
PERMUTATIONS = 20000
_TIE = 1e-12


def _check(points, x, y, x_bounds) -> tuple:
    points, x, y = (np.asarray(a) for a in (points, x, y))
    x, y = x.astype(np.float64), y.astype(np.float64)
    if points.ndim != 1 or x.shape != points.shape or y.shape != points.shape:
        raise ValueError(f"points, x and y must be 1-D of one length, got shapes {points.shape}, "
                         f"{x.shape}, {y.shape}")
    bounds = tuple(x_bounds) if isinstance(x_bounds, (tuple, list)) else ()
    if len(bounds) != 2 or not bounds[0] < bounds[1]:
        raise ValueError(f"x_bounds must be (low, high) with low < high, got {x_bounds!r}")
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


@lru_cache(maxsize=EXACT_POINTS)
def _all_permutations(k: int) -> np.ndarray:
    """Every permutation of ``range(k)``: (k!, k) int array."""
    return np.array(list(itertools.permutations(range(k))), dtype=np.intp)


def permutation_p(mx, my, seed: int = 0) -> float:
    """Two-sided permutation p-value of Spearman's rho between ``mx`` and ``my`` (k,) (module
    docstring): exact for k <= :data:`EXACT_POINTS`, else Monte Carlo; NaN if rho is undefined."""
    rx = stats.rankdata(np.asarray(mx, dtype=np.float64))
    ry = stats.rankdata(np.asarray(my, dtype=np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    if len(rx) < 2 or norm == 0:
        return np.nan
    observed = abs(rx @ ry) / norm
    if len(rx) <= EXACT_POINTS:
        rho = ry[_all_permutations(len(rx))] @ rx / norm
        return float(np.mean(np.abs(rho) >= observed - _TIE))
    rng = np.random.default_rng(seed)
    rho = rng.permuted(np.tile(ry, (PERMUTATIONS, 1)), axis=1) @ rx / norm
    return float((1 + np.sum(np.abs(rho) >= observed - _TIE)) / (1 + PERMUTATIONS))


def _draw_means(x: np.ndarray, y: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` pairs of means of one point's seeds (n,) from the bivariate t (module docstring):
    (draws, 2)."""
    values = np.stack([x, y], axis=1)
    n = len(values)
    deviations = values - values.mean(axis=0)
    deviations[:, np.ptp(values, axis=0) == 0] = 0.0  # no spread: no float dust either
    g = rng.standard_normal((draws, n))
    c = rng.chisquare(n - 1, size=draws)
    return values.mean(axis=0) + (g @ deviations) / np.sqrt(n * c)[:, None]


def point_spearman(points, x, y, resamples: int = 2000, seed: int = 0, level: float = LEVEL,
                   x_bounds: tuple = (-np.inf, np.inf)) -> dict:
    """Spearman's rho between the per-point means of ``x`` and ``y``, with a parametric interval
    and a permutation p-value (module docstring).

    Shape: points, x, y: (n,) — one entry per model: its point (e.g. training eps), and two
    measurements of it. Models with a non-finite x or y are left out. ``resamples`` parametric
    draws, seeded by ``seed`` (which also seeds a Monte-Carlo p-value); drawn x means are clipped
    to ``x_bounds``.

    Returns:
        ``{"rho", "ci_low", "ci_high", "p", "points", "models"}``; rho and p are NaN with fewer
        than 2 points or a constant mean, and the interval NaN with fewer than 3 points or a
        point with a single model.
    """
    check_int("resamples", resamples, 1)
    check_int("seed", seed, 0)
    check_range("level", level, 0.0, 1.0)
    points, x, y = _check(points, x, y, x_bounds)
    groups = [np.flatnonzero(points == p) for p in np.unique(points)]
    out = {"rho": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan,
           "points": len(groups), "models": len(x)}
    if len(groups) < 2:
        return out
    mx = np.array([x[g].mean() for g in groups])
    my = np.array([y[g].mean() for g in groups])
    if np.ptp(mx) == 0 or np.ptp(my) == 0:
        return out
    out["rho"] = float(stats.spearmanr(mx, my).statistic)
    out["p"] = permutation_p(mx, my, seed)
    if len(groups) < 3 or min(len(g) for g in groups) < 2:
        return out
    rng = np.random.default_rng(seed)
    drawn = np.stack([_draw_means(x[g], y[g], resamples, rng) for g in groups], axis=1)
    rho = _row_spearman(np.clip(drawn[..., 0], *x_bounds), drawn[..., 1])
    if np.isfinite(rho).any():
        low, high = np.nanpercentile(rho, [50 * (1 - level), 50 * (1 + level)])
        out["ci_low"], out["ci_high"] = float(low), float(high)
    return out
