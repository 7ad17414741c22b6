"""Per-image records -> means with 95% confidence intervals, paired differences and verdicts.

Pure functions on pandas frames; nothing here recomputes a model output. Records have one row per
(seed, model, input, image) with score columns named ``"{explainer}/{metric}/{reference}"``:

- explainer: an attribution method (``guided_backprop`` ...), a trivial control explainer
  (``image``, ``edge``, ``noise``) or ``model`` for scores of the model itself (``alignment``);
- reference: the image the map is compared with, ``clean`` (x) or ``perturbed`` (x_adv).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
from scipy import stats

from .metrics import METRICS

KEY_COLUMNS = ("seed", "model", "input", "image", "label", "target", "prediction", "correct")
CELL = ["model", "input", "explainer", "metric", "reference"]


def score_columns(records: pd.DataFrame) -> list:
    """The ``explainer/metric/reference`` columns of ``records``."""
    return [c for c in records.columns if c.count("/") == 2]


def long_scores(records: pd.DataFrame) -> pd.DataFrame:
    """Tidy per-image scores: one row per (seed, model, input, image, explainer, metric,
    reference) with a ``score`` column; rows whose score was not computed are dropped."""
    tidy = records.melt(id_vars=[c for c in KEY_COLUMNS if c in records.columns],
                        value_vars=score_columns(records), var_name="column", value_name="score")
    tidy = tidy.dropna(subset=["score"])
    parts = tidy["column"].str.split("/", expand=True)
    tidy["explainer"], tidy["metric"], tidy["reference"] = parts[0], parts[1], parts[2]
    return tidy.drop(columns="column").reset_index(drop=True)


def mean_ci(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple:
    """Mean and 95% percentile-bootstrap interval (``scipy.stats.bootstrap``) of ``values``.

    Returns ``(mean, low, high)``; a constant sample gives ``(v, v, v)``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(values.mean())
    if values.size < 2 or np.all(values == values[0]):
        return (mean, mean, mean)
    result = stats.bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=0.95,
                             method="percentile", vectorized=True, batch=max(1, 2_000_000 // values.size),
                             random_state=np.random.default_rng(seed))
    return (mean, float(result.confidence_interval.low), float(result.confidence_interval.high))


def summarize(records: pd.DataFrame, resamples: int = 2000) -> pd.DataFrame:
    """One row per (model, input, explainer, metric, reference): ``mean``, ``ci_low``,
    ``ci_high`` (95% bootstrap over images, all seeds pooled), ``n`` images, and with several
    seeds ``seed_std`` (std of the per-seed means)."""
    rows = []
    tidy = long_scores(records)
    for key, group in tidy.groupby(CELL, sort=False):
        mean, low, high = mean_ci(group["score"].to_numpy(), resamples)
        seed_means = group.groupby("seed")["score"].mean()
        rows.append(dict(zip(CELL, key), mean=mean, ci_low=low, ci_high=high, n=len(group),
                         seeds=len(seed_means),
                         seed_std=float(seed_means.std()) if len(seed_means) > 1 else np.nan))
    return pd.DataFrame(rows)


def paired_difference(records: pd.DataFrame, first: dict, second: dict, column: str,
                      resamples: int = 2000) -> Optional[dict]:
    """Mean and 95% CI of ``score(first) - score(second)`` over the images both have.

    ``first``/``second`` select rows, e.g. ``{"model": "robust", "input": "natural"}``; the pair
    is matched on (seed, image). ``column`` names the score (or a pair of columns
    ``"a|b"``: ``a`` from ``first``, ``b`` from ``second``). Returns None when nothing pairs.
    """
    col_a, _, col_b = column.partition("|")
    col_b = col_b or col_a
    a = _select(records, first)[["seed", "image", col_a]].rename(columns={col_a: "a"})
    b = _select(records, second)[["seed", "image", col_b]].rename(columns={col_b: "b"})
    joined = a.merge(b, on=["seed", "image"]).dropna()
    if joined.empty:
        return None
    mean, low, high = mean_ci((joined["a"] - joined["b"]).to_numpy(), resamples)
    return {"difference": mean, "ci_low": low, "ci_high": high, "n": len(joined)}


def _select(records: pd.DataFrame, where: dict) -> pd.DataFrame:
    mask = np.ones(len(records), dtype=bool)
    for key, value in where.items():
        mask &= (records[key] == value).to_numpy()
    return records[mask]


def robust_minus_natural(records: pd.DataFrame, resamples: int = 2000) -> pd.DataFrame:
    """Paired differences robust - natural for every score column and input kind."""
    rows = []
    for input_kind in ("natural", "adversarial"):
        for column in score_columns(records):
            diff = paired_difference(records, {"model": "robust", "input": input_kind},
                                     {"model": "natural", "input": input_kind}, column, resamples)
            if diff is not None:
                explainer, metric, reference = column.split("/")
                rows.append(dict(input=input_kind, explainer=explainer, metric=metric,
                                 reference=reference, **diff))
    return pd.DataFrame(rows)


def control_differences(records: pd.DataFrame, method: str, resamples: int = 2000) -> pd.DataFrame:
    """Paired differences (trained model's ``method`` map) - (each control) on natural inputs,
    compared with the clean image: the random-weights model with the same method, the plain
    gradient and (for metrics with a finite range) the trivial explainers on the same images."""
    rows = []
    natural = records[records["input"] == "natural"]
    for model in ("natural", "robust"):
        own = {"model": model, "input": "natural"}
        for metric in sorted({c.split("/")[1] for c in score_columns(records)}):
            explainer = method if METRICS[metric].uses_map else "model"
            column = f"{explainer}/{metric}/clean"
            if column not in natural.columns:
                continue
            controls = {"random weights": ({"model": "random_weights", "input": "natural"},
                                           column)}
            if explainer not in ("saliency", "model") \
                    and f"saliency/{metric}/clean" in natural.columns:
                controls["plain gradient"] = (own, f"{column}|saliency/{metric}/clean")
            # Trivial explainers' maps are on the image's scale, so they are only comparable
            # with metrics that ignore the map's scale (a finite range, e.g. cosine).
            for trivial in ("image", "edge", "noise") if math.isfinite(METRICS[metric].high) else ():
                if f"{trivial}/{metric}/clean" in natural.columns:
                    controls[trivial] = (own, f"{column}|{trivial}/{metric}/clean")
            for control, (where, col) in controls.items():
                diff = paired_difference(natural, own, where, col, resamples)
                if diff is not None:
                    rows.append(dict(model=model, metric=metric, control=control, **diff))
    return pd.DataFrame(rows)


def _interval(row) -> str:
    return f"{row['difference']:+.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]"


def verdicts(differences: pd.DataFrame, controls: pd.DataFrame, method: str) -> list:
    """One line per metric, computed from the paired differences on natural inputs.

    "Cleaner" follows each metric's direction (:data:`rvi.metrics.METRICS`). The robust model is
    said to be above a control only when the 95% CI of its paired difference excludes zero on
    the cleaner side.
    """
    lines = []
    for metric in [m for m in METRICS if m in set(differences.get("metric", []))]:
        sign = 1.0 if METRICS[metric].higher_is_better else -1.0
        reference = "clean"
        pick = differences[(differences["input"] == "natural") & (differences["metric"] == metric)
                           & (differences["reference"] == reference)
                           & (differences["explainer"] == (method if METRICS[metric].uses_map
                                                           else "model"))]
        if pick.empty:
            continue
        row = pick.iloc[0]
        low, high = sorted((sign * row["ci_low"], sign * row["ci_high"]))
        if low > 0:
            head = f"robust cleaner than natural by {_interval(row)}"
        elif high < 0:
            head = f"robust less clean than natural by {_interval(row)}"
        else:
            head = f"robust and natural not distinguishable ({_interval(row)})"
        own = controls[(controls["model"] == "robust") & (controls["metric"] == metric)] \
            if not controls.empty else controls
        not_beaten = [f"{c['control']} {_interval(c)}" for _, c in own.iterrows()
                      if min(sign * c["ci_low"], sign * c["ci_high"]) <= 0]
        if not own.empty and not not_beaten:
            tail = "robust above every control"
        elif not own.empty:
            random_row = own[own["control"] == "random weights"]
            tail = ("robust not distinguishable from the random-weights control"
                    if not random_row.empty and random_row.iloc[0]["ci_low"] <= 0
                    <= random_row.iloc[0]["ci_high"] else "")
            tail = "; ".join(filter(None, [tail, "robust not above: " + ", ".join(not_beaten)]))
        else:
            tail = "no controls run"
        label = method if METRICS[metric].uses_map else "model gradient"
        lines.append(f"{metric} ({label}, natural input): {head}; {tail}")
    return lines
