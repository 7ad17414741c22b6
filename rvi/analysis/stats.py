"""Statistics over per-image records: means with 95% intervals that respect seed -> image
nesting, paired differences and Holm's correction. Pure functions on arrays and frames.

The trained model is the unit of a claim about training methods, so with S >= 2 seeds every
interval is a Student-t interval with S - 1 degrees of freedom over the S per-seed (paired) means,
and its p-value the matching one-sample t-test. With one seed the interval is a percentile
bootstrap over images and describes only these models on these images; its p-value is the normal
approximation over images (``docs/usage.md``, "Reading the tables").

Bootstrap streams: every table draws its resamples from a numpy Generator of its own seed, so that
adding a table or a model never changes another table's intervals: :func:`summarize` uses the
cell's number (0, 1, ...), :func:`model_differences` :data:`DIFFERENCE_STREAMS` + input number +
2 x model number, and :func:`rvi.analysis.verdicts.control_differences` :data:`CONTROL_STREAMS` + ...
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Optional

import numpy as np
import pandas as pd
from scipy import stats

from ..scoring.records import CELL, NATURAL_ROBUST, ModelSet, score_keys

LEVEL = 0.95
SEEDS_INTERVAL = "seeds: t, S-1 df"
IMAGES_INTERVAL = "images: bootstrap"
DRAWS_INTERVAL = "re-initializations: t, D-1 df"
#: First bootstrap seed of the (model - reference) differences (see the module docstring).
DIFFERENCE_STREAMS = 100
#: First bootstrap seed of the (model - control) differences.
CONTROL_STREAMS = 200
_CHUNK = 4_000_000  # entries of a bootstrap weight block (about 32 MB as float64)


@contextmanager
def _quiet():
    """Silence numpy's warnings about empty or all-NaN columns (they give NaN, as intended)."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _check_values(values, seeds) -> tuple:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"values must be 1-D or 2-D (images, columns), got shape {values.shape}")
    seeds = np.zeros(len(values), dtype=np.int64) if seeds is None else np.asarray(seeds)
    if seeds.shape != (len(values),):
        raise ValueError(f"seeds must have shape ({len(values)},), got {seeds.shape}")
    return values, seeds


def seed_means(values, seeds) -> tuple:
    """Per-seed means of each column, ignoring NaN.

    Shape: values (n, k) float, seeds (n,). Returns ``(means, counts)``, both (S, k) for the S
    distinct seeds in sorted order; a seed with no value in a column has mean NaN, count 0.
    """
    values, seeds = _check_values(values, seeds)
    _, codes = np.unique(seeds, return_inverse=True)
    groups = (codes[None, :] == np.arange(codes.max() + 1 if len(codes) else 0)[:, None])
    finite = np.isfinite(values)
    counts = groups.astype(np.float64) @ finite
    sums = groups.astype(np.float64) @ np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts, counts.astype(np.int64)


def t_interval(means, level: float = LEVEL) -> tuple:
    """Student-t interval and two-sided one-sample t-test (against 0) over per-seed means.

    Shape: means (S, k), NaN where a seed has no value. Returns ``(mean, low, high, p, seeds,
    sd)``, each (k,); columns with fewer than 2 seeds give NaN interval and p.
    """
    means = np.asarray(means, dtype=np.float64)
    count = np.isfinite(means).sum(axis=0)
    with _quiet():
        mean = np.nanmean(means, axis=0)
        sd = np.nanstd(means, axis=0, ddof=1)
        df = np.where(count >= 2, count - 1, np.nan)
        half = stats.t.ppf(0.5 + level / 2, df) * sd / np.sqrt(count)
        tstat = mean / (sd / np.sqrt(count))
        p = np.where(sd > 0, 2 * stats.t.sf(np.abs(tstat), df), np.where(mean == 0, 1.0, 0.0))
    p = np.where(count >= 2, p, np.nan)
    return mean, mean - half, mean + half, p, count, sd


def draw_interval(frame: pd.DataFrame, value: str = "mean") -> Optional[tuple]:
    """The interval of a randomization-test quantity measured per (seed, draw): ``frame`` has
    ``seed``, ``value`` and, for results with several re-initializations, ``draw``.

    With 2 or more seeds: a t interval over per-seed means (each the mean over its draws, so the
    seeds' spread carries the draws'). With one seed and 2 or more draws: a t interval over the
    draws. Returns ``(mean, low, high, p, seeds, draws, interval kind)``, or None with one seed
    and one draw (the caller's fallback)."""
    draws = int(frame["draw"].nunique()) if "draw" in frame.columns else 1
    per_seed = frame.groupby("seed")[value].mean()
    if len(per_seed) >= 2:
        units, kind = per_seed.to_numpy(), SEEDS_INTERVAL
    elif draws >= 2:
        units, kind = frame[value].to_numpy(), DRAWS_INTERVAL
    else:
        return None
    mean, low, high, p, _, _ = t_interval(units.astype(np.float64)[:, None])
    return mean[0], low[0], high[0], p[0], len(per_seed), draws, kind


def mean_over_draws(frame: pd.DataFrame) -> pd.DataFrame:
    """Randomization rows with their re-initializations (``draw``) averaged: one row per seed and
    everything else; ``mean`` is the draws' mean, ``sd`` their images' mean sd, ``n`` per draw.
    A frame without ``draw`` is returned as it is."""
    if frame.empty or "draw" not in frame.columns:
        return frame
    keys = [c for c in frame.columns if c not in ("draw", "mean", "sd", "n")]
    return frame.groupby(keys, sort=False, dropna=False).agg(
        mean=("mean", "mean"), sd=("sd", "mean"), n=("n", "min")).reset_index()


def bootstrap_weights(n: int, resamples: int, rng: np.random.Generator, chunk: int):
    """Yield blocks of resampling counts: (b, n) float arrays whose rows count how often each of
    the ``n`` images is drawn in one resample (rows sum to ``n``); ``resamples`` rows in all."""
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


def bootstrap_interval(values, resamples: int = 2000, seed: int = 0,
                       level: float = LEVEL) -> tuple:
    """Percentile-bootstrap interval of each column's mean over images, NaN ignored.

    One resampling-count matrix W (resamples x n) is shared by every column; resampled means
    are ``(W @ V) / (W @ finite)``, in blocks that bound memory. Shape: values (n, k).
    Returns ``(mean, low, high)``, each (k,).
    """
    values, _ = _check_values(values, None)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / count
    n, k = values.shape
    if n == 0:
        nan = np.full(k, np.nan)
        return nan, nan, nan
    rng = np.random.default_rng(seed)
    full = bool(finite.all())
    boot = []
    for weights in bootstrap_weights(n, resamples, rng, max(1, _CHUNK // n)):
        sums = weights @ filled
        with np.errstate(invalid="ignore", divide="ignore"):
            boot.append(sums / n if full else sums / (weights @ finite))
    boot = np.concatenate(boot)
    with _quiet():
        low, high = np.nanpercentile(boot, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return mean, low, high


def interval_stats(values, seeds, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean, 95% interval and p (against 0) of each column, honouring seed -> image nesting.

    Shape: values (n, k) float (NaN = missing), seeds (n,). A column with values from S >= 2
    seeds gets the mean of its per-seed means and a Student-t interval (S - 1 df) with its
    one-sample t-test; with S = 1 the mean over images, a percentile bootstrap over images
    (``resamples``, numpy Generator seeded with ``seed``) and a normal-approximation p over
    images. Returns one row per column: ``mean, ci_low, ci_high, p, seeds, n`` (images in all),
    ``n_per_seed`` (fewest images of any seed), ``seed_std`` (sd of the per-seed means, NaN for
    one seed) and ``interval`` (:data:`SEEDS_INTERVAL` or :data:`IMAGES_INTERVAL`).
    """
    values, seeds = _check_values(values, seeds)
    means, counts = seed_means(values, seeds)
    mean, low, high, p, n_seeds, sd = t_interval(means)
    one = n_seeds == 1
    if one.any():
        sub = values[:, one]
        b_mean, b_low, b_high = bootstrap_interval(sub, resamples, seed)
        mean[one], low[one], high[one] = b_mean, b_low, b_high
        n = np.isfinite(sub).sum(axis=0)
        with _quiet():
            se = np.nanstd(sub, axis=0, ddof=1) / np.sqrt(n)
            z = np.abs(b_mean) / se
            p[one] = np.where(se > 0, 2 * stats.norm.sf(z), np.where(b_mean == 0, 1.0, 0.0))
    per_seed = np.where(counts > 0, counts, np.iinfo(np.int64).max).min(axis=0) if len(counts) \
        else np.zeros(values.shape[1], dtype=np.int64)
    return pd.DataFrame({
        "mean": mean, "ci_low": low, "ci_high": high, "p": p, "seeds": n_seeds,
        "n": counts.sum(axis=0), "n_per_seed": np.where(n_seeds > 0, per_seed, 0),
        "seed_std": np.where(n_seeds > 1, sd, np.nan),
        "interval": np.where(one, IMAGES_INTERVAL, SEEDS_INTERVAL)})


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error); NaN entries are not tests.

    ``p_(i)`` sorted ascending among the m finite values becomes
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; returned in the input order.
    """
    p = np.asarray(p, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must be in [0, 1], got {p[(p < 0) | (p > 1)][:3].tolist()}")
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted) if m else adjusted
    return out


# --- frames: cells and paired differences -----------------------------------------------------

def _matrix(frame: pd.DataFrame, columns: list) -> np.ndarray:
    return frame[columns].to_numpy(dtype=np.float64, na_value=np.nan) if columns \
        else np.empty((len(frame), 0))


def _select(records: pd.DataFrame, where: dict) -> pd.DataFrame:
    mask = np.ones(len(records), dtype=bool)
    for key, value in where.items():
        mask &= (records[key] == value).to_numpy()
    return records[mask]


def _stats_rows(values, seeds, labels: list, resamples: int, seed: int) -> pd.DataFrame:
    """``interval_stats`` of the columns of ``values`` with ``labels`` (dicts) in front; columns
    with no value at all are left out."""
    table = interval_stats(values, seeds, resamples, seed)
    table = pd.concat([pd.DataFrame(labels), table], axis=1)
    return table[table["n"] > 0].reset_index(drop=True)


def summarize(records: pd.DataFrame, resamples: int = 2000) -> pd.DataFrame:
    """One row per (model, input, explainer, metric, reference): ``mean``, ``ci_low``,
    ``ci_high``, ``seeds``, ``n`` (images, all seeds), ``n_per_seed``,
    ``seed_std`` and ``interval`` (see :func:`interval_stats`)."""
    keys = score_keys(records)
    frames = []
    cells = records[["model", "input"]].drop_duplicates().itertuples(index=False)
    for number, (model, input_kind) in enumerate(cells):
        part = _select(records, {"model": model, "input": input_kind})
        labels = [dict(model=model, input=input_kind, **k._asdict()) for k in keys.values()]
        frames.append(_stats_rows(_matrix(part, list(keys)), part["seed"].to_numpy(), labels,
                                  resamples, number))
    if not frames:
        return pd.DataFrame(columns=CELL)
    return pd.concat(frames, ignore_index=True).drop(columns="p")  # a cell's mean is not a test


def _pair(records: pd.DataFrame, first: dict, second: dict) -> tuple:
    """Rows of ``first`` and ``second`` matched on (seed, image): ``(a, b, seeds)``."""
    a, b = _select(records, first), _select(records, second)
    left = pd.DataFrame({"seed": a["seed"].to_numpy(), "image": a["image"].to_numpy(),
                         "ia": np.arange(len(a))})
    right = pd.DataFrame({"seed": b["seed"].to_numpy(), "image": b["image"].to_numpy(),
                          "ib": np.arange(len(b))})
    joined = left.merge(right, on=["seed", "image"], validate="one_to_one")
    return a.iloc[joined["ia"].to_numpy()], b.iloc[joined["ib"].to_numpy()], \
        joined["seed"].to_numpy()


def paired_stats(records: pd.DataFrame, first: dict, second: dict, pairs: list,
                 labels: list, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Paired ``first - second`` differences, matched on (seed, image), for several columns at
    once: ``pairs`` is a list of ``(column in first, column in second)``, ``labels`` one dict per
    pair. Returns the labels with ``difference``, ``ci_low``, ``ci_high``, ``p`` ... (see
    :func:`interval_stats`); pairs with nothing in common are left out."""
    if len(pairs) != len(labels):
        raise ValueError(f"pairs and labels must have the same length, got {len(pairs)} and "
                         f"{len(labels)}")
    a, b, seeds = _pair(records, first, second)
    diff = _matrix(a, [p[0] for p in pairs]) - _matrix(b, [p[1] for p in pairs])
    return _stats_rows(diff, seeds, labels, resamples, seed).rename(columns={"mean": "difference"})


def model_differences(records: pd.DataFrame, models: ModelSet = NATURAL_ROBUST,
                      resamples: int = 2000) -> pd.DataFrame:
    """Paired differences (model - reference) for every compared model, score column and input
    kind (one row each, see :func:`paired_stats`); ``model`` names the compared model and
    ``versus`` the reference."""
    keys = score_keys(records)
    frames = []
    for index, model in enumerate(models.compared):
        for number, input_kind in enumerate(("natural", "adversarial")):
            labels = [dict(model=model, versus=models.reference, input=input_kind, **k._asdict())
                      for k in keys.values()]
            frames.append(paired_stats(records, {"model": model, "input": input_kind},
                                       {"model": models.reference, "input": input_kind},
                                       [(c, c) for c in keys], labels, resamples,
                                       DIFFERENCE_STREAMS + number + 2 * index))
    if not frames:
        return pd.DataFrame(columns=["model", "versus", "input", "explainer", "metric",
                                     "reference", "difference", "ci_low", "ci_high", "p",
                                     "seeds", "n", "n_per_seed", "seed_std", "interval"])
    return pd.concat(frames, ignore_index=True)
