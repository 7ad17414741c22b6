"""Controls, the randomization test and verdict rules, side by side: which differences a verdict
checks, the rule each check follows (as data, quoted verbatim in ``docs/metrics.md``) and the
English line that states the outcome. Pure functions on the tables of :mod:`rvi.analysis.stats`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd

from .._core.formatting import interval, p_value
from ..config import AttackConfig, dataset_attack
from ..metrics import METRICS
from ..scoring.records import MODEL_EXPLAINER, NATURAL_ROBUST, ModelSet, ScoreKey, score_keys
from .stats import CONTROL_STREAMS, draw_interval, holm, paired_stats

#: Family-wise error rate of the verdicts (Holm-adjusted p-values are compared with it).
ALPHA = 0.05
#: A verdict about training methods needs at least this many seeds.
MIN_SEEDS = 3
#: Accuracy rule: the robust model's accuracy (mean over seeds, in [0, 1]) under the dataset's own
#: attack (:func:`rvi.config.dataset_attack`: PGD-7 with a random start) meets the dataset's
#: target. MNIST (eps 0.3): the seed study's PGD-7 accuracy, 91.6% (Madry et al. 2018 report 93.2%
#: PGD-40 for a larger CNN). mnist-5k (eps 0.3, 4,000 training images): 80%, the bar README's
#: example checks. Fashion-MNIST (eps 0.1): 78.5%, from Croce, Andriushchenko and Hein 2019
#: ("Provable robustness of ReLU networks via maximization of linear regions", AISTATS, Table 1):
#: PGD adversarial training of a small CNN (two strided convolutions, 100 epochs) leaves at least
#: 21.5% robust error under their attacks (PGD and MIP, first 1,000 test images) at 11.54% clean
#: error; PGD-7 is weaker than their attacks, so this bar is, if anything, lenient. The
#: clean-accuracy cost is reported, not ruled on: robust models lose clean accuracy (about 2
#: points in that table on Fashion-MNIST, 7 for rvi 0.6's robust LeNets).
ROBUST_ACCURACY_TARGETS = {"mnist": 0.916, "mnist-5k": 0.80, "fashion-mnist": 0.785}
#: Without a target (other datasets or attacks, models a user brings): the robust model's
#: accuracy under the benchmark attack at least this far above the reference's.
ATTACK_ACCURACY_GAIN = 0.10


class Control(NamedTuple):
    """A control the trained model's score is compared with, as data.

    ``model``: where the control's scores are stored: ``RANDOM_WEIGHTS`` (the trained model's
    random-weights control, :attr:`ModelSet.random_weights`), ``REFERENCE`` (the trivial
    explainers look at the image only and are stored once per seed, in the reference model's
    natural-input rows) or None (the trained model itself); ``explainer``: the control's
    explainer (None: the trained model's own); ``image_scale``: its maps are on the image's
    scale, so it is compared only on metrics with a finite range; ``purpose``: what beating it
    shows (``docs/metrics.md`` lists each).
    """

    name: str
    model: Optional[str]
    explainer: Optional[str]
    image_scale: bool
    purpose: str


RANDOM_WEIGHTS, REFERENCE = "random_weights", "reference"
CONTROL_COMPARISONS = (
    Control("random weights", RANDOM_WEIGHTS, None, False,
            "the score depends on the trained weights, not on the architecture alone"),
    Control("plain gradient", None, "saliency", False,
            "compares attribution methods on one model (the main method against the same "
            "model's gradient), not models"),
    Control("image", REFERENCE, "image", True,
            "the score sees more than a copy of the input"),
    Control("edge", REFERENCE, "edge", True,
            "the score sees more than the input's outline"),
    Control("noise", REFERENCE, "noise", True,
            "the score sees structure at all (a map with none, scored the same way)"),
)
#: Roles of a control row. ``required``: a verdict needs the trained model to beat it.
#: ``reference``: the control is the cleanest map by the metric's own definition, so it is a
#: point of comparison, not a bar. ``method comparison``: it compares attribution methods
#: (reported in a table of its own; the study's question is about models).
REQUIRED, REFERENCE_MAP, METHOD_COMPARISON = "required", "reference", "method comparison"
#: Controls that compare methods rather than models.
METHOD_CONTROLS = ("plain gradient",)
#: (control, metric) pairs where the control is the cleanest map by the metric's definition.
REFERENCES = {
    ("image", "cosine"): "cosine(x, x) = 1, the upper bound",
    ("image", "foreground_mass"): "the image's own mass on its bright pixels: a map that is the "
                                  "digit scores near it by definition (0.896 on mnist-5k)",
}
#: The name of the cascading-randomization control (fully randomized end vs the trained model).
CASCADING = "cascading end"


def control_role(control: str, metric: str) -> str:
    """:data:`REQUIRED`, :data:`REFERENCE_MAP` or :data:`METHOD_COMPARISON` for ``control``
    (a :data:`CONTROL_COMPARISONS` name or :data:`CASCADING`) on ``metric``."""
    if control in METHOD_CONTROLS:
        return METHOD_COMPARISON
    return REFERENCE_MAP if (control, metric) in REFERENCES else REQUIRED


def _explainer(metric: str, method: str) -> str:
    return method if METRICS[metric].uses_map else MODEL_EXPLAINER


def _control_pairs(keys: dict, metric: str, method: str) -> list:
    """``[(control, column of the trained model, column of the control, where the control's
    rows are)]`` for ``metric``; where: :data:`RANDOM_WEIGHTS`, :data:`REFERENCE` or None (the
    trained model's own rows)."""
    own = ScoreKey(_explainer(metric, method), metric, "clean").column
    if own not in keys:
        return []
    reads_output = METRICS[metric].family == "faithfulness"
    pairs = []
    for control in CONTROL_COMPARISONS:
        explainer = control.explainer or keys[own].explainer
        where = control.model
        if reads_output and where == RANDOM_WEIGHTS:
            continue  # a random model's own output is no baseline for the trained model's
        if reads_output and where == REFERENCE:
            where = None  # trivial maps scored with the model under test, in its own rows
        elif control.image_scale and not math.isfinite(METRICS[metric].high):
            continue  # a map on the image's scale says nothing about a scale-dependent score
        if control.model is None and explainer in (keys[own].explainer, "model"):
            continue  # the trained map itself (e.g. method = saliency)
        other = ScoreKey(explainer, metric, "clean").column
        if other in keys:
            pairs.append((control, own, other, where))
    return pairs


def control_differences(records: pd.DataFrame, method: str, resamples: int = 2000,
                        cascading: Optional[pd.DataFrame] = None,
                        models: ModelSet = NATURAL_ROBUST) -> pd.DataFrame:
    """Paired (trained model's ``method`` score) - (each control) on natural inputs, compared
    with the clean image, for every metric of :data:`rvi.metrics.METRICS` in the records
    (others are skipped). Controls are :data:`CONTROL_COMPARISONS` (trivial explainers only on metrics with
    a finite range) and, given the ``cascading`` frame, :data:`CASCADING`: the trained model's
    score minus the fully randomized end's (last step), paired per seed. Every trained model of
    ``models`` is compared with its own controls. Columns: ``model,
    metric, control, difference, ci_low, ci_high, p, seeds, n, n_per_seed, interval, role``
    (:func:`control_role`).
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
            for c, a, b, where in _control_pairs(keys, metric, method):
                if stored[where] is not None:
                    by_rows.setdefault(stored[where], []).append((metric, c, a, b))
        for rows_model, found in by_rows.items():
            where = {"model": rows_model, "input": "natural"}
            labels = [dict(model=model, metric=m, control=c.name) for m, c, _, _ in found]
            frames.append(paired_stats(records, own, where, [(a, b) for _, _, a, b in found],
                                       labels, resamples, CONTROL_STREAMS + 2 * number + len(frames)))
        if cascading is not None and not cascading.empty:
            frames.append(_cascading_differences(cascading, model, metrics))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["model", "metric", "control", "difference", "ci_low",
                                     "ci_high", "p", "seeds", "n", "interval", "role"])
    table = pd.concat(frames, ignore_index=True)
    table["role"] = [control_role(c, m) for c, m in zip(table["control"], table["metric"])]
    return table


def _cascading_differences(cascading: pd.DataFrame, model: str, metrics: list) -> pd.DataFrame:
    """Per seed and re-initialization: cascading step 0 (trained) minus the last step (all
    layers random); a t interval over seeds (of their draws' means) with >= 2 seeds, over the
    draws with one seed and >= 2 draws (:func:`rvi.analysis.stats.draw_interval`), else the single
    difference with no interval."""
    rows = []
    for metric in metrics:
        pick = cascading[(cascading["model"] == model) & (cascading["metric"] == metric)]
        if "mode" in pick.columns:
            pick = pick[(pick["mode"] == "cascading") & (pick["kind"] == "score")]
        if pick.empty:
            continue
        units = [c for c in ("seed", "draw") if c in pick.columns]
        ends = pick.sort_values(units + ["step"]).groupby(units)["mean"]
        diff = (ends.first() - ends.last()).rename("difference").reset_index()
        found = draw_interval(diff, "difference")
        if found is None:
            mean, low, high, p, seeds, kind = diff["difference"].iloc[0], np.nan, np.nan, \
                np.nan, 1, "none: one mean per seed"
        else:
            mean, low, high, p, seeds, _, kind = found
        rows.append(dict(model=model, metric=metric, control=CASCADING, difference=mean,
                         ci_low=low, ci_high=high, p=p, seeds=int(seeds),
                         n=int(pick.groupby("seed")["n"].first().sum()),
                         n_per_seed=int(pick["n"].min()), interval=kind))
    return pd.DataFrame(rows)


def _main_differences(differences: pd.DataFrame, method: str) -> pd.Series:
    """Mask of the (model - reference) rows a verdict checks: natural input, clean reference,
    the main method (or the model's own score), metrics of METRICS with ``verdict``."""
    if differences.empty:
        return pd.Series([], dtype=bool)
    known = differences["metric"].isin([m for m in METRICS if METRICS[m].verdict])
    wanted = [(_explainer(m, method) if m in METRICS else None) for m in differences["metric"]]
    return known & (differences["input"] == "natural") & (differences["reference"] == "clean") \
        & (differences["explainer"] == pd.Series(wanted, index=differences.index))


def _required_controls(controls: pd.DataFrame, models: ModelSet) -> pd.Series:
    """Mask of the control rows a verdict requires a compared (non-reference) model to beat:
    role ``required``, and cascading only for metrics scored on randomized models."""
    if controls.empty:
        return pd.Series([], dtype=bool)
    scored_on_random = [METRICS[m].family != "faithfulness" if m in METRICS else False
                        for m in controls["metric"]]
    return controls["model"].isin(models.compared) & (controls["role"] == REQUIRED) \
        & ((controls["control"] != CASCADING) | pd.Series(scored_on_random, index=controls.index))


def with_holm(differences: pd.DataFrame, controls: pd.DataFrame, method: str,
              models: ModelSet = NATURAL_ROBUST) -> tuple:
    """Copies of both frames with ``p_holm``: for every row a verdict checks, the
    Holm-adjusted p-value of that verdict; NaN for rows outside every verdict.

    A verdict (one per compared model and metric with ``verdict``) is an intersection-union
    test of its conditions (the main difference, each required control, the cascading end): its
    p-value is the largest p of its conditions, and no correction is needed inside it (Berger
    1982). Holm's correction runs across the verdicts of the study, all models in one family.
    """
    differences, controls = differences.copy(), controls.copy()
    d_mask = _main_differences(differences, method).to_numpy()
    c_mask = _required_controls(controls, models).to_numpy()
    components: dict = {}
    for frame, mask in ((differences, d_mask), (controls, c_mask)):
        for (_, row), member in zip(frame.iterrows(), mask):
            if member:
                components.setdefault(_verdict_of(row), []).append(row["p"])
    main = {_verdict_of(r) for (_, r), m in zip(differences.iterrows(), d_mask) if m}
    keys = [k for k in components if k in main]  # a verdict needs its main difference
    p_iut = np.array([_largest(components[k]) for k in keys])
    adjusted = dict(zip(keys, holm(p_iut))) if keys else {}
    for frame, mask in ((differences, d_mask), (controls, c_mask)):
        frame["p_holm"] = [adjusted.get(_verdict_of(r), np.nan) if m else np.nan
                           for (_, r), m in zip(frame.iterrows(), mask)] if len(frame) else []
    return differences, controls


def _largest(p_values: list) -> float:
    """The largest finite p-value (a condition without one is decided by its point value), or
    NaN when none is finite."""
    finite = [p for p in p_values if np.isfinite(p)]
    return max(finite) if finite else np.nan


def _verdict_of(row) -> tuple:
    """(compared model, metric) of a difference or control row; a frame from before model sets
    holds robust - natural."""
    return row.get("model", "robust"), row["metric"]


# --- Adebayo et al.'s randomization test: similarity of randomized maps to the trained maps ---

#: The randomization test's tolerance on the excess similarity over the floor: a method passes
#: when its fully randomized maps are at most this much closer to the trained maps of the same
#: image than to those of another image (in units of the similarity measure).
RANDOMIZATION_MARGIN = 0.05
RANDOMIZATION_RULE = (
    "A method passes the model-randomization test (Adebayo et al. 2018) on a similarity measure "
    "when its maps of the fully randomized model (cascading, every layer re-initialized) are no "
    "closer to the trained model's map of the same image than to its maps of other images (the "
    "floor: what all maps share, e.g. the digits' common layout), up to a tolerance: the whole 95% "
    "interval of the excess (same image − other image) lies below "
    f"{RANDOMIZATION_MARGIN:g}. It fails when the interval lies above {RANDOMIZATION_MARGIN:g} "
    "(the randomized maps keep structure of this image that the trained maps also have) and is "
    "inconclusive otherwise. Decided for every measure (Spearman, SSIM, HOG) on absolute and "
    "signed maps. Each model is re-initialized several times (``randomization_draws``, default "
    "5): the interval is over seeds (each the mean of its draws) with 2 or more seeds, and over "
    "the draws with one, so one lucky draw cannot decide it.")


def randomization_test(randomization: pd.DataFrame) -> pd.DataFrame:
    """Per trained model, method and similarity measure at the fully randomized end of
    cascading randomization: the similarity to the trained maps (same image), the floor
    (another image), their per-image excess with a 95% interval, the trivial image and edge
    maps' similarity to the trained maps, and the outcome of :data:`RANDOMIZATION_RULE`.

    Intervals are t intervals over per-seed means (of their draws) with 2 or more seeds, over
    the draws with one seed and several draws, else normal intervals over the images of the one
    seed and draw (mean ± 1.96 sd / sqrt(n)).
    Columns: ``model, method, measure, same, floor, image_map, edge_map, excess, ci_low,
    ci_high, seeds, draws, n_per_seed, interval, outcome``.
    """
    columns = ["model", "method", "measure", "same", "floor", "image_map", "edge_map", "excess",
               "ci_low", "ci_high", "seeds", "draws", "n_per_seed", "interval", "outcome"]
    if randomization is None or randomization.empty or "kind" not in randomization.columns:
        return pd.DataFrame(columns=columns)
    cascade = randomization[randomization["mode"] == "cascading"]
    last = cascade["step"] == cascade.groupby(["seed", "model"])["step"].transform("max")
    ends, first = cascade[last], cascade[cascade["step"] == 0]
    rows = []
    for (model, method, measure), group in ends[ends["kind"] == "excess"].groupby(
            ["model", "method", "metric"], sort=False):
        mean, low, high, seeds, draws, kind = _seed_interval(group)
        pick = dict(model=model, method=method, metric=measure)

        def mean_of(frame, kind):
            values = frame[(frame["kind"] == kind)
                           & (frame[list(pick)] == pd.Series(pick)).all(axis=1)]["mean"]
            return float(values.mean()) if len(values) else np.nan

        outcome = "passes" if high < RANDOMIZATION_MARGIN else \
            "fails" if low > RANDOMIZATION_MARGIN else "inconclusive"
        rows.append(dict(model=model, method=method, measure=measure,
                         same=mean_of(ends, "similarity"), floor=mean_of(ends, "floor"),
                         image_map=mean_of(first, "image map"),
                         edge_map=mean_of(first, "edge map"), excess=mean, ci_low=low,
                         ci_high=high, seeds=seeds, draws=draws, n_per_seed=int(group["n"].min()),
                         interval=kind, outcome=outcome))
    return pd.DataFrame(rows, columns=columns)


def _seed_interval(group: pd.DataFrame) -> tuple:
    """``(mean, low, high, seeds, draws, interval kind)`` of per-(seed, draw) rows (``mean, sd,
    n``): :func:`rvi.analysis.stats.draw_interval`, or with one seed and one draw a normal interval over
    its images."""
    found = draw_interval(group)
    if found is not None:
        mean, low, high, _, seeds, draws, kind = found
        return mean, low, high, seeds, draws, kind
    row = group.iloc[0]
    half = 1.96 * row["sd"] / math.sqrt(row["n"])
    return row["mean"], row["mean"] - half, row["mean"] + half, 1, 1, "images: normal"


# --- verdicts: the rule is data ---------------------------------------------------------------

class Rule(NamedTuple):
    """One line of the verdict rule: ``key`` names the check, ``text`` is printed in the docs
    (``docs/metrics.md`` holds every text verbatim)."""

    key: str
    text: str


VERDICT_RULES = (
    Rule("metric", "Verdicts are drawn only on metrics comparable across models (``verdict`` in "
         "the registry): raw deletion, insertion and infidelity depend on each model's own "
         "baseline (its resistance to occlusion, its logit scale) and are reported, not decided "
         "on; their model-relative versions (deletion_gain, deletion_gain_blur, lerf_morf, "
         "infidelity_unexplained) are."),
    Rule("difference", "The robust − natural paired difference of the main method's score on "
         "natural inputs, compared with the clean image, lies on the metric's cleaner side with "
         f"p < {ALPHA:g}."),
    Rule("controls", "The robust model beats every required control on the cleaner side with "
         f"p < {ALPHA:g}. The required controls check that the metric sees the weights and the "
         "map: its random-weights version on metrics that do not read the model's output "
         "(cleanliness); the trivial explainers (image, edge, noise) on cleanliness metrics with "
         "a finite range, compared on the image, and on every faithfulness metric, scored with "
         "the robust model itself. A trivial map that is the cleanest map by the metric's own "
         "definition (the image map for cosine and foreground_mass) is a reference, and the "
         "plain gradient of the same model compares attribution methods, not models: both are "
         "reported, not required."),
    Rule("cascading", "The fully randomized end of cascading randomization scores on the less "
         f"clean side of the trained robust model (p < {ALPHA:g} over the per-seed "
         "differences with 2 or more seeds, over the re-initializations with one seed and "
         "several; by its point value with one seed and one draw, which gives a "
         "single mean); otherwise the metric does not depend on the weights here. Faithfulness "
         "metrics are not scored on randomized models, so this line does not apply to them."),
    Rule("holm", "The conditions above form one intersection–union test, whose p-value is the "
         "largest p of its conditions (no correction inside a verdict); that p-value, "
         "Holm-adjusted across the verdicts of the study (one per compared model and metric), "
         f"is below {ALPHA:g}."),
    Rule("accuracy", "The robust model's accuracy under the dataset's own attack (mean over "
         "seeds) meets the dataset's robust-accuracy target ("
         + ", ".join(f"{d} {100 * t:g}%" for d, t in ROBUST_ACCURACY_TARGETS.items())
         + " under PGD-7); without a target (another dataset or attack, models a user brings) "
         f"its accuracy under the benchmark attack is at least {100 * ATTACK_ACCURACY_GAIN:g} "
         "points above the natural model's. The clean-accuracy cost is reported, not ruled on."),
    Rule("seeds", f"A verdict about training methods rests on at least {MIN_SEEDS} seeds; with "
         "fewer it speaks of the given models only."),
)


def _interval(row) -> str:
    return interval(row["difference"], row["ci_low"], row["ci_high"], "+.3g")


def _cleaner(row, sign: float) -> Optional[bool]:
    """True when the row's difference is significant (raw p < ALPHA) on the cleaner side, False
    when on the other side, None when not distinguishable (or the point value without any p)."""
    p = row.get("p", np.nan)
    if not np.isfinite(p):
        return bool(sign * row["difference"] > 0) if np.isfinite(row["difference"]) else None
    if p >= ALPHA:
        return None
    return bool(sign * row["difference"] > 0)


def robust_accuracy_target(dataset: str, attack: AttackConfig) -> Optional[float]:
    """The robust-accuracy target of :data:`ROBUST_ACCURACY_TARGETS` when ``attack`` is
    ``dataset``'s own (:func:`rvi.config.dataset_attack`), else None."""
    if dataset in ROBUST_ACCURACY_TARGETS and attack == dataset_attack(dataset):
        return ROBUST_ACCURACY_TARGETS[dataset]
    return None


def accuracy_check(accuracy: Optional[pd.DataFrame], attack: Optional[str],
                   model: str = "robust", reference: str = "natural",
                   target: Optional[float] = None) -> tuple:
    """The accuracy rule for ``model`` against ``reference``: ``(met, text)``; ``met`` is None
    when it cannot be checked.

    ``accuracy`` has one row per (seed, model, attack) with ``accuracy`` in [0, 1]; ``attack``
    is the benchmark attack's label (a value of its ``attack`` column); ``target``: the robust
    accuracy ``model`` must reach under it (:func:`robust_accuracy_target`), or None for the
    gain over ``reference``."""
    if accuracy is None or accuracy.empty or attack is None:
        return None, "accuracy not checked"
    means = accuracy.groupby(["model", "attack"])["accuracy"].mean()
    needed = [(m, a) for m in (reference, model) for a in ("clean", attack)]
    if any(k not in means.index for k in needed):
        return None, f"accuracy under {attack} not measured"
    clean = means[(model, "clean")] - means[(reference, "clean")]
    if target is not None:
        met = bool(means[(model, attack)] >= target)
        robust = f"{model} {100 * means[(model, attack)]:.1f}% under {attack} (target {100 * target:g}%)"
    else:
        attacked = means[(model, attack)] - means[(reference, attack)]
        met = bool(attacked >= ATTACK_ACCURACY_GAIN)
        robust = (f"{model} − {reference} {100 * attacked:+.1f} points under {attack} (rule: "
                  f"≥ {100 * ATTACK_ACCURACY_GAIN:+g})")
    return met, (f"accuracy: {robust}, {'meets' if met else 'fails'} the rule; clean cost "
                 f"{100 * -clean:+.1f} points")


def verdicts(differences: pd.DataFrame, controls: pd.DataFrame, method: str,
             accuracy: Optional[pd.DataFrame] = None, attack: Optional[str] = None,
             models: ModelSet = NATURAL_ROBUST, target: Optional[float] = None) -> list:
    """One line per compared model and metric of METRICS with a (model - reference)
    difference, following :data:`VERDICT_RULES` (where "robust" reads "the compared model" and
    "natural" "the reference"). Each condition is decided at raw p < :data:`ALPHA`, the
    verdict by its Holm-adjusted intersection-union p (``p_holm``, computed here with
    :func:`with_holm` when absent, over all models at once); intervals shown are the raw 95%
    ones."""
    return [row["line"] for row in verdict_rows(differences, controls, method, accuracy, attack,
                                                models, target)]


#: The numbers of a verdict's main difference each :func:`verdict_rows` dict carries.
VERDICT_NUMBERS = ("difference", "ci_low", "ci_high", "p", "p_holm")


def verdict_rows(differences: pd.DataFrame, controls: pd.DataFrame, method: str,
                 accuracy: Optional[pd.DataFrame] = None, attack: Optional[str] = None,
                 models: ModelSet = NATURAL_ROBUST, target: Optional[float] = None) -> list:
    """:func:`verdicts` as dicts: ``model``, ``metric``, ``verdict`` (e.g. ``supported`` or
    ``not supported (fails: controls, holm)``), the whole ``line`` and the main difference's
    numbers (:data:`VERDICT_NUMBERS`: ``difference``, ``ci_low``, ``ci_high``, ``p`` and the
    verdict's Holm-adjusted ``p_holm``)."""
    if "p_holm" not in differences.columns or \
            (not controls.empty and "p_holm" not in controls.columns):
        differences, controls = with_holm(differences, controls, method, models)
    main = differences[_main_differences(differences, method)]
    tests = int(np.isfinite(main["p_holm"]).sum())
    if "model" not in main.columns:  # a frame from before model sets: robust - natural
        main = main.assign(model="robust", versus="natural")
    lines = []
    for model in [m for m in models.compared if m in set(main["model"])]:
        acc_met, acc_text = accuracy_check(accuracy, attack, model, models.reference, target)
        rows = main[main["model"] == model]
        for metric in [m for m in METRICS if m in set(rows["metric"])]:
            row = rows[rows["metric"] == metric].iloc[0]
            own = controls[(controls["model"] == model) & (controls["metric"] == metric)] \
                if not controls.empty else controls
            line, verdict = _verdict_line(metric, method, row, own, acc_met, acc_text, tests,
                                          model, models.reference)
            lines.append({"model": model, "metric": metric, "verdict": verdict, "line": line,
                          **{key: float(row[key]) for key in VERDICT_NUMBERS}})
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
    head = f"{head} {_interval(row)} (p {p_value(row['p'])})"
    checks = {"metric": True, "difference": side is True, "accuracy": acc_met is True}
    parts = [head]
    required = own[(own["role"] == REQUIRED) & (own["control"] != CASCADING)]
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
    references = own[own["role"] == REFERENCE_MAP]
    if not references.empty:
        parts.append("reference (the cleanest map by the metric's definition; reported, not "
                     "required): " + ", ".join(f"{c['control']} {_interval(c)}"
                                               for _, c in references.iterrows()))
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
    checks["holm"] = bool(np.isfinite(row["p_holm"]) and row["p_holm"] < ALPHA)
    parts.append(f"verdict p (largest of its conditions, Holm-adjusted) {p_value(row['p_holm'])}")
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
            f"[{seeds} seed{'s' if seeds != 1 else ''}, Holm over {tests} verdicts{scope}]",
            verdict)
