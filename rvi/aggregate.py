"""Per-image records -> means with 95% intervals that respect seed -> image nesting, paired
differences, Holm-corrected tests and verdicts.

Pure functions on pandas frames; nothing here recomputes a model output. Records have one row per
(seed, model, input, image) with score columns named ``"{explainer}/{metric}/{reference}"``
(parsed once, by :meth:`ScoreKey.from_column`):

- explainer: an attribution method (``guided_backprop`` ...), a trivial control explainer
  (``image``, ``edge``, ``noise``) or ``model`` for scores of the model itself (``alignment``);
- reference: the image the map is compared with, ``clean`` (x) or ``perturbed`` (x_adv).

Statistics (see ``docs/usage.md``, "Reading the tables"): the trained model is the unit of a
claim about training methods, so with S >= 2 seeds every interval is a Student-t interval with
S - 1 degrees of freedom over the S per-seed (paired) means, and its p-value the matching
one-sample t-test. With one seed the interval is a percentile bootstrap over images and describes
only these models on these images; its p-value is the normal approximation over images.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd
from scipy import stats

from .metrics import METRICS

KEY_COLUMNS = ("seed", "model", "input", "image", "label", "target", "prediction", "correct")
CELL = ["model", "input", "explainer", "metric", "reference"]
LEVEL = 0.95
#: Family-wise error rate of the verdicts (Holm-adjusted p-values are compared with it).
ALPHA = 0.05
#: A verdict about training methods needs at least this many seeds.
MIN_SEEDS = 3
#: Accuracy rule, in accuracy points (fractions of 1): robust clean >= natural clean - margin,
#: robust >= natural + gain under the benchmark attack (means over seeds).
CLEAN_ACCURACY_MARGIN = 0.02
ATTACK_ACCURACY_GAIN = 0.10
SEEDS_INTERVAL = "seeds: t, S-1 df"
IMAGES_INTERVAL = "images: bootstrap"
_CHUNK = 4_000_000  # entries of a bootstrap weight block (about 32 MB as float64)


class ScoreKey(NamedTuple):
    """The parts of a score column ``"explainer/metric/reference"``."""

    explainer: str
    metric: str
    reference: str

    @classmethod
    def from_column(cls, column) -> Optional["ScoreKey"]:
        """The key of a score column, or None for any other column (``seed``, ``label`` ...)."""
        if not isinstance(column, str) or column.count("/") != 2:
            return None
        return cls(*column.split("/"))

    @property
    def column(self) -> str:
        return f"{self.explainer}/{self.metric}/{self.reference}"


def score_keys(records: pd.DataFrame) -> dict:
    """``{column: ScoreKey}`` for the score columns of ``records``, in column order."""
    keys = {c: ScoreKey.from_column(c) for c in records.columns}
    return {c: k for c, k in keys.items() if k is not None}


def score_columns(records: pd.DataFrame) -> list:
    """The ``explainer/metric/reference`` columns of ``records``."""
    return list(score_keys(records))


# --- the statistics: per-seed t interval, or per-image bootstrap with one seed ------------------

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


def mean_ci(values, resamples: int = 2000, seed: int = 0) -> tuple:
    """Mean and 95% percentile-bootstrap interval over ``values`` (one sample, 1-D).

    Returns ``(mean, low, high)``; an empty sample gives NaNs.
    """
    mean, low, high = bootstrap_interval(np.asarray(values, dtype=np.float64).reshape(-1),
                                         resamples, seed)
    return float(mean[0]), float(low[0]), float(high[0])


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


# --- frames: cells, paired differences, controls --------------------------------------------

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


def paired_difference(records: pd.DataFrame, first: dict, second: dict, column: str,
                      resamples: int = 2000) -> Optional[dict]:
    """One paired difference ``score(first) - score(second)`` (``column`` or ``"a|b"``: ``a``
    from ``first``, ``b`` from ``second``) as a dict; None when nothing pairs."""
    col_a, _, col_b = column.partition("|")
    table = paired_stats(records, first, second, [(col_a, col_b or col_a)], [{}], resamples)
    return None if table.empty else table.iloc[0].to_dict()


class ModelSet(NamedTuple):
    """Which models of the records are compared, and how (data, not names in code).

    ``trained``: the compared models' names, in order; ``reference``: the one every other
    trained model is compared with (paired differences, verdicts); ``random_weights``: for each
    trained model, the model whose rows hold its random-weights control (None: not run). The
    trivial explainers are stored in the reference model's natural-input rows.
    """

    trained: tuple
    reference: str
    random_weights: dict

    @property
    def compared(self) -> tuple:
        """The trained models other than the reference, in order."""
        return tuple(m for m in self.trained if m != self.reference)

    @property
    def controls(self) -> tuple:
        """The random-weights control models, each once, in order."""
        return tuple(dict.fromkeys(c for c in self.random_weights.values() if c is not None))

    def to_dict(self) -> dict:
        return {"trained": list(self.trained), "reference": self.reference,
                "random_weights": dict(self.random_weights)}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSet":
        return cls(tuple(data["trained"]), data["reference"], dict(data["random_weights"]))


#: The model set of :func:`rvi.run_benchmark` (and of results saved before model sets existed):
#: natural and robust, compared robust - natural, sharing one random-weights architecture.
NATURAL_ROBUST = ModelSet(("natural", "robust"), "natural",
                          {"natural": "random_weights", "robust": "random_weights"})


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
                                       100 + number + 2 * index))
    if not frames:
        return pd.DataFrame(columns=["model", "versus", "input", "explainer", "metric",
                                     "reference", "difference", "ci_low", "ci_high", "p",
                                     "seeds", "n", "n_per_seed", "seed_std", "interval"])
    return pd.concat(frames, ignore_index=True)


def robust_minus_natural(records: pd.DataFrame, resamples: int = 2000) -> pd.DataFrame:
    """Paired differences robust - natural for every score column and input kind (one row
    each, see :func:`paired_stats`): :func:`model_differences` of :data:`NATURAL_ROBUST`."""
    return model_differences(records, NATURAL_ROBUST, resamples)


class Control(NamedTuple):
    """A control the trained model's score is compared with, as data.

    ``model``: where the control's scores are stored: ``RANDOM_WEIGHTS`` (the trained model's
    random-weights control, :attr:`ModelSet.random_weights`), ``REFERENCE`` (the trivial
    explainers look at the image only and are stored once per seed, in the reference model's
    natural-input rows) or None (the trained model itself); ``explainer``: the control's
    explainer (None: the trained model's own); ``image_scale``: its maps are on the image's
    scale, so it is compared only on metrics with a finite range.
    """

    name: str
    model: Optional[str]
    explainer: Optional[str]
    image_scale: bool


RANDOM_WEIGHTS, REFERENCE = "random_weights", "reference"
CONTROLS = (
    Control("random weights", RANDOM_WEIGHTS, None, False),
    Control("plain gradient", None, "saliency", False),
    Control("image", REFERENCE, "image", True),
    Control("edge", REFERENCE, "edge", True),
    Control("noise", REFERENCE, "noise", True),
)
#: (control, metric) pairs where the control reaches the metric's upper bound by construction:
#: reported, not required to be beaten. cosine(x, x) = 1. foreground_mass of the image map is
#: the image's own share of mass on pixels > 0.5 (< 1), so it is a bar, not a ceiling.
CEILINGS = {("image", "cosine"): "cosine(x, x) = 1, the upper bound"}
#: The name of the cascading-randomization control (fully randomized end vs the trained model).
CASCADING = "cascading end"


def is_ceiling(control: str, metric: str) -> bool:
    """Whether ``control`` scores ``metric``'s upper bound by construction (see CEILINGS)."""
    return (control, metric) in CEILINGS


def _explainer(metric: str, method: str) -> str:
    return method if METRICS[metric].uses_map else "model"


def _control_pairs(keys: dict, metric: str, method: str) -> list:
    """``[(control, column of the trained model, column of the control)]`` for ``metric``."""
    own = ScoreKey(_explainer(metric, method), metric, "clean").column
    if own not in keys:
        return []
    pairs = []
    for control in CONTROLS:
        explainer = control.explainer or keys[own].explainer
        if control.image_scale and not math.isfinite(METRICS[metric].high):
            continue  # a map on the image's scale says nothing about a scale-dependent score
        if control.model is None and explainer in (keys[own].explainer, "model"):
            continue  # the trained map itself (e.g. method = saliency)
        other = ScoreKey(explainer, metric, "clean").column
        if other in keys:
            pairs.append((control, own, other))
    return pairs


def control_differences(records: pd.DataFrame, method: str, resamples: int = 2000,
                        cascading: Optional[pd.DataFrame] = None,
                        models: ModelSet = NATURAL_ROBUST) -> pd.DataFrame:
    """Paired (trained model's ``method`` score) - (each control) on natural inputs, compared
    with the clean image, for every metric of :data:`rvi.metrics.METRICS` in the records
    (others are skipped). Controls are :data:`CONTROLS` (trivial explainers only on metrics with
    a finite range) and, given the ``cascading`` frame, :data:`CASCADING`: the trained model's
    score minus the fully randomized end's (last step), paired per seed. Every trained model of
    ``models`` is compared with its own controls. Columns: ``model,
    metric, control, difference, ci_low, ci_high, p, seeds, n, n_per_seed, interval, ceiling``.
    """
    keys = score_keys(records)
    metrics = [m for m in dict.fromkeys(k.metric for k in keys.values()) if m in METRICS]
    frames = []
    for number, model in enumerate(models.trained):
        own = {"model": model, "input": "natural"}
        stored = {RANDOM_WEIGHTS: models.random_weights.get(model), REFERENCE: models.reference,
                  None: model}
        by_rows: dict = {}  # the model whose rows hold the control's column -> its pairs
        for metric in metrics:
            for c, a, b in _control_pairs(keys, metric, method):
                if stored[c.model] is not None:
                    by_rows.setdefault(stored[c.model], []).append((metric, c, a, b))
        for rows_model, found in by_rows.items():
            where = {"model": rows_model, "input": "natural"}
            labels = [dict(model=model, metric=m, control=c.name) for m, c, _, _ in found]
            frames.append(paired_stats(records, own, where, [(a, b) for _, _, a, b in found],
                                       labels, resamples, 200 + 2 * number + len(frames)))
        if cascading is not None and not cascading.empty:
            frames.append(_cascading_differences(cascading, model, metrics))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["model", "metric", "control", "difference", "ci_low",
                                     "ci_high", "p", "seeds", "n", "interval", "ceiling"])
    table = pd.concat(frames, ignore_index=True)
    table["ceiling"] = [is_ceiling(c, m) for c, m in zip(table["control"], table["metric"])]
    return table


def _cascading_differences(cascading: pd.DataFrame, model: str, metrics: list) -> pd.DataFrame:
    """Per seed: cascading step 0 (trained) minus the last step (all layers random); a t
    interval over seeds when there are >= 2, else the single difference with no interval."""
    rows = []
    for metric in metrics:
        pick = cascading[(cascading["model"] == model) & (cascading["metric"] == metric)]
        if "mode" in pick.columns:
            pick = pick[(pick["mode"] == "cascading") & (pick["kind"] == "score")]
        if pick.empty:
            continue
        pick = pick.sort_values(["seed", "step"])
        first = pick.groupby("seed")["mean"].first()
        last = pick.groupby("seed")["mean"].last()
        diff = (first - last).to_numpy(dtype=np.float64)[:, None]
        mean, low, high, p, count, _ = t_interval(diff)
        rows.append(dict(model=model, metric=metric, control=CASCADING, difference=mean[0],
                         ci_low=low[0], ci_high=high[0], p=p[0], seeds=int(count[0]),
                         n=int(pick.groupby("seed")["n"].first().sum()),
                         n_per_seed=int(pick["n"].min()),
                         interval=SEEDS_INTERVAL if count[0] >= 2 else "none: one mean per seed"))
    return pd.DataFrame(rows)


def _main_differences(differences: pd.DataFrame, method: str) -> pd.Series:
    """Mask of the (model - reference) rows a verdict checks: natural input, clean reference,
    the main method (or the model's own score), metrics of METRICS."""
    if differences.empty:
        return pd.Series([], dtype=bool)
    known = differences["metric"].isin(list(METRICS))
    wanted = [(_explainer(m, method) if m in METRICS else None) for m in differences["metric"]]
    return known & (differences["input"] == "natural") & (differences["reference"] == "clean") \
        & (differences["explainer"] == pd.Series(wanted, index=differences.index))


def _required_controls(controls: pd.DataFrame, models: ModelSet) -> pd.Series:
    """Mask of the control rows a verdict requires a compared (non-reference) model to beat."""
    if controls.empty:
        return pd.Series([], dtype=bool)
    return controls["model"].isin(models.compared) & ~controls["ceiling"].astype(bool)


def with_holm(differences: pd.DataFrame, controls: pd.DataFrame, method: str,
              models: ModelSet = NATURAL_ROBUST) -> tuple:
    """Copies of both frames with ``p_holm``: Holm over the family the verdicts check (each
    compared model - the reference per metric, and each compared model - each of its required
    controls per metric; rows with a p-value), all models in one family; NaN for rows outside
    the family."""
    differences, controls = differences.copy(), controls.copy()
    d_mask = _main_differences(differences, method).to_numpy()
    c_mask = _required_controls(controls, models).to_numpy()
    d_p = differences["p"].to_numpy(dtype=np.float64) if len(differences) else np.empty(0)
    c_p = controls["p"].to_numpy(dtype=np.float64) if len(controls) else np.empty(0)
    family = np.concatenate([np.where(d_mask, d_p, np.nan), np.where(c_mask, c_p, np.nan)])
    adjusted = holm(family)
    differences["p_holm"] = adjusted[:len(differences)]
    controls["p_holm"] = adjusted[len(differences):]
    return differences, controls


# --- Adebayo et al.'s randomization test: similarity of randomized maps to the trained maps ---

#: A method fails the randomization test when its maps at the fully randomized end of cascading
#: randomization keep a mean Spearman rank correlation of at least this with the trained maps.
RANDOMIZATION_LIMIT = 0.5
RANDOMIZATION_RULE = (
    "A method passes the model-randomization test (Adebayo et al. 2018) when the mean Spearman "
    "rank correlation between its maps of the fully randomized model (cascading, every layer "
    f"re-initialized) and of the trained model lies below {RANDOMIZATION_LIMIT:g} with its whole "
    f"95% interval, fails when the interval lies at or above {RANDOMIZATION_LIMIT:g}, and is "
    "inconclusive otherwise.")


def randomization_test(randomization: pd.DataFrame) -> pd.DataFrame:
    """Per trained model and similarity measure: the similarity of the fully randomized
    (cascading) model's maps to the trained model's, with a 95% interval and the outcome of
    :data:`RANDOMIZATION_RULE` (decided on ``spearman``).

    The interval is a t interval over per-seed means with 2 or more seeds, else a normal
    interval over the images of the one seed (mean ± 1.96 sd / sqrt(n)).
    Columns: ``model, method, measure, mean, ci_low, ci_high, seeds, n_per_seed, interval,
    outcome``.
    """
    columns = ["model", "method", "measure", "mean", "ci_low", "ci_high", "seeds", "n_per_seed",
               "interval", "outcome"]
    if randomization is None or randomization.empty or "kind" not in randomization.columns:
        return pd.DataFrame(columns=columns)
    ends = randomization[(randomization["mode"] == "cascading")
                         & (randomization["kind"] == "similarity")]
    ends = ends[ends["step"] == ends.groupby(["seed", "model"])["step"].transform("max")]
    rows = []
    for (model, method, measure), group in ends.groupby(["model", "method", "metric"], sort=False):
        if len(group) >= 2:
            mean, low, high, _, seeds, _ = t_interval(group["mean"].to_numpy()[:, None])
            mean, low, high, seeds, kind = mean[0], low[0], high[0], int(seeds[0]), SEEDS_INTERVAL
        else:
            row = group.iloc[0]
            half = 1.96 * row["sd"] / math.sqrt(row["n"])
            mean, low, high, seeds = row["mean"], row["mean"] - half, row["mean"] + half, 1
            kind = "images: normal"
        outcome = "passes" if high < RANDOMIZATION_LIMIT else \
            "fails" if low >= RANDOMIZATION_LIMIT else "inconclusive"
        rows.append(dict(model=model, method=method, measure=measure, mean=mean, ci_low=low,
                         ci_high=high, seeds=seeds, n_per_seed=int(group["n"].min()),
                         interval=kind, outcome=outcome if measure == "spearman" else ""))
    return pd.DataFrame(rows, columns=columns)


# --- verdicts: the rule is data ---------------------------------------------------------------

class Rule(NamedTuple):
    """One line of the verdict rule: ``key`` names the check, ``text`` is printed in the docs
    (``docs/metrics.md`` holds every text verbatim)."""

    key: str
    text: str


VERDICT_RULES = (
    Rule("difference", "The robust − natural paired difference of the main method's score on "
         "natural inputs, compared with the clean image, lies on the metric's cleaner side with "
         f"Holm-adjusted p < {ALPHA:g}."),
    Rule("controls", "The robust model beats every required control on the cleaner side with "
         f"Holm-adjusted p < {ALPHA:g}: its random-weights version and the plain gradient, and "
         "the trivial explainers (image, edge, noise) only on metrics with a finite range. "
         "Ceiling controls (the image map for cosine) are reported, not required."),
    Rule("cascading", "The fully randomized end of cascading randomization scores on the less "
         f"clean side of the trained robust model (Holm-adjusted p < {ALPHA:g} over the per-seed "
         "differences with 2 or more seeds; by its point value with one seed, which gives a "
         "single mean); otherwise the metric does not depend on the weights here. Faithfulness "
         "metrics are not scored on randomized models, so this line does not apply to them."),
    Rule("accuracy", "The robust model's clean accuracy (mean over seeds) is at least the "
         f"natural model's minus {100 * CLEAN_ACCURACY_MARGIN:g} points, and its accuracy under "
         f"the benchmark attack at least {100 * ATTACK_ACCURACY_GAIN:g} points above the natural "
         "model's."),
    Rule("seeds", f"A verdict about training methods rests on at least {MIN_SEEDS} seeds; with "
         "fewer it speaks of the given models only."),
)


def _interval(row) -> str:
    return f"{row['difference']:+.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]"


def _cleaner(row, sign: float) -> Optional[bool]:
    """True when the row's difference is significant on the cleaner side, False when on the
    other side, None when not distinguishable (Holm p, or the point value without any p)."""
    p = row.get("p_holm", np.nan)
    if not np.isfinite(p):
        p = row.get("p", np.nan)
    if not np.isfinite(p):
        return bool(sign * row["difference"] > 0) if np.isfinite(row["difference"]) else None
    if p >= ALPHA:
        return None
    return bool(sign * row["difference"] > 0)


def accuracy_check(accuracy: Optional[pd.DataFrame], attack: Optional[str],
                   model: str = "robust", reference: str = "natural") -> tuple:
    """The accuracy rule for ``model`` against ``reference``: ``(met, text)``; ``met`` is None
    when it cannot be checked.

    ``accuracy`` has one row per (seed, model, attack) with ``accuracy`` in [0, 1]; ``attack``
    is the benchmark attack's label (a value of its ``attack`` column)."""
    if accuracy is None or accuracy.empty or attack is None:
        return None, "accuracy not checked"
    means = accuracy.groupby(["model", "attack"])["accuracy"].mean()
    needed = [(m, a) for m in (reference, model) for a in ("clean", attack)]
    if any(k not in means.index for k in needed):
        return None, f"accuracy under {attack} not measured"
    clean = means[(model, "clean")] - means[(reference, "clean")]
    attacked = means[(model, attack)] - means[(reference, attack)]
    met = bool(clean >= -CLEAN_ACCURACY_MARGIN and attacked >= ATTACK_ACCURACY_GAIN)
    return met, (f"accuracy {model} − {reference}: clean {100 * clean:+.1f} points, {attack} "
                 f"{100 * attacked:+.1f} points ({'meets' if met else 'fails'} the rule)")


def verdicts(differences: pd.DataFrame, controls: pd.DataFrame, method: str,
             accuracy: Optional[pd.DataFrame] = None, attack: Optional[str] = None,
             models: ModelSet = NATURAL_ROBUST) -> list:
    """One line per compared model and metric of METRICS with a (model - reference)
    difference, following :data:`VERDICT_RULES` (where "robust" reads "the compared model" and
    "natural" "the reference"). Decisions use Holm-adjusted p < :data:`ALPHA` (``p_holm``,
    computed here with :func:`with_holm` when absent, over all models at once); intervals shown
    are the raw 95% ones."""
    if "p_holm" not in differences.columns or \
            (not controls.empty and "p_holm" not in controls.columns):
        differences, controls = with_holm(differences, controls, method, models)
    tests = int(np.isfinite(differences["p_holm"]).sum()) + \
        (int(np.isfinite(controls["p_holm"]).sum()) if not controls.empty else 0)
    main = differences[_main_differences(differences, method)]
    if "model" not in main.columns:  # a frame from before model sets: robust - natural
        main = main.assign(model="robust", versus="natural")
    lines = []
    for model in [m for m in models.compared if m in set(main["model"])]:
        acc_met, acc_text = accuracy_check(accuracy, attack, model, models.reference)
        rows = main[main["model"] == model]
        for metric in [m for m in METRICS if m in set(rows["metric"])]:
            row = rows[rows["metric"] == metric].iloc[0]
            own = controls[(controls["model"] == model) & (controls["metric"] == metric)] \
                if not controls.empty else controls
            lines.append(_verdict_line(metric, method, row, own, acc_met, acc_text, tests,
                                       model, models.reference))
    return lines


def _verdict_line(metric, method, row, own, acc_met, acc_text, tests, model="robust",
                  reference="natural") -> str:
    sign = 1.0 if METRICS[metric].higher_is_better else -1.0
    seeds = int(row["seeds"])
    side = _cleaner(row, sign)
    better = "more faithful" if METRICS[metric].family == "faithfulness" else "cleaner"
    worse = "less faithful" if METRICS[metric].family == "faithfulness" else "less clean"
    head = {True: f"{model} {better} than {reference} by",
            False: f"{model} {worse} than {reference} by",
            None: f"{model} and {reference} not distinguishable:"}[side]
    head = f"{head} {_interval(row)} (p_holm {row['p_holm']:.2g})"
    checks = {"difference": side is True, "accuracy": acc_met is True}
    parts = [head]
    required = own[~own["ceiling"].astype(bool) & (own["control"] != CASCADING)]
    not_beaten = [f"{c['control']} {_interval(c)}" for _, c in required.iterrows()
                  if _cleaner(c, sign) is not True]
    checks["controls"] = not required.empty and not not_beaten
    if required.empty:
        parts.append("no controls run")
    elif not not_beaten:
        parts.append(f"{model} above every required control")
    else:
        random_row = required[required["control"] == "random weights"]
        if not random_row.empty and _cleaner(random_row.iloc[0], sign) is None:
            parts.append(f"{model} not distinguishable from the random-weights control")
        parts.append(f"{model} not above: " + ", ".join(not_beaten))
    ceilings = own[own["ceiling"].astype(bool)]
    if not ceilings.empty:
        parts.append("ceiling (reported, not required): "
                     + ", ".join(f"{c['control']} {_interval(c)}" for _, c in ceilings.iterrows()))
    cascade = own[own["control"] == CASCADING]
    if METRICS[metric].family == "faithfulness":
        checks["cascading"] = True
    elif cascade.empty:
        checks["cascading"] = False
        parts.append("cascading randomization not run")
    else:
        checks["cascading"] = _cleaner(cascade.iloc[0], sign) is True
        parts.append(f"cascading end {_interval(cascade.iloc[0])}" + (
            "" if checks["cascading"] else ": the metric does not depend on the weights here"))
    parts.append(acc_text)
    checks["seeds"] = seeds >= MIN_SEEDS
    failed = [r.key for r in VERDICT_RULES if r.key != "seeds" and not checks[r.key]]
    if failed:
        verdict = f"not supported (fails: {', '.join(failed)})"
    elif checks["seeds"]:
        verdict = "supported for the training methods"
    else:
        verdict = "supported"
    scope = "" if checks["seeds"] else \
        f"; about the given models only (a method-level verdict needs ≥ {MIN_SEEDS} seeds)"
    label = method if METRICS[metric].uses_map else "model gradient"
    return (f"{metric} ({label}, natural input): {'; '.join(parts)} → {verdict} "
            f"[{seeds} seed{'s' if seeds != 1 else ''}, Holm over {tests} tests{scope}]")
