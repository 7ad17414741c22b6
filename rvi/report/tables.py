"""Tables (Markdown, LaTeX, CSV) rendered from a result's records (figures: :mod:`rvi.report.figures`).

Nothing here computes a model output: every number comes from the records through
:mod:`rvi.analysis.stats` and :mod:`rvi.analysis.verdicts`, so a saved result can be re-rendered at any time.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from .._core.formatting import NO_INTERVAL, interval, p_value
from ..analysis.verdicts import ALPHA, METHOD_COMPARISON, RANDOMIZATION_RULE, randomization_test
from ..metrics import METRICS
from ..scoring.records import NATURAL_ROBUST

MODEL_NAMES = {"natural": "natural", "robust": "robust", "random_weights": "random weights"}


def cell_order(result) -> list:
    """``(model, input)`` cells in table order: each trained model's natural and adversarial
    inputs, then the random-weights controls (natural inputs)."""
    models = result.model_set
    return [(m, i) for m in models.trained for i in ("natural", "adversarial")] \
        + [(c, "natural") for c in models.controls]


def model_name(model: str) -> str:
    """A model's name in tables: ``random_weights:NAME`` (compare's control of NAME) reads
    ``random weights of NAME``."""
    if model.startswith("random_weights:"):
        return f"random weights of {model.partition(':')[2]}"
    return MODEL_NAMES.get(model, model)


#: Markdown characters a name could use to format or break a table: escaped by :func:`md_escape`
#: (``_`` only at a word's edge, where it starts or ends emphasis; ``](`` would start a link).
_MARKDOWN_SPECIAL = re.compile(r"[\\`*|<>$]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|\](?=\()")


def md_escape(text) -> str:
    """``text`` as Markdown that renders it literally: rvi's own labels pass unchanged, a
    user's model name ``a|*b*`` becomes ``a\\|\\*b\\*``. Non-strings pass unchanged."""
    if not isinstance(text, str):
        return text
    return _MARKDOWN_SPECIAL.sub(lambda match: "\\" + match.group(0), text)


def md_table(frame: pd.DataFrame, **kwargs) -> str:
    """``frame.to_markdown(index=False, **kwargs)`` with every string cell and column name
    passed through :func:`md_escape`."""
    frame = frame.rename(columns=md_escape)
    frame = frame.apply(lambda column: column if pd.api.types.is_numeric_dtype(column)
                        else column.map(md_escape))
    return frame.to_markdown(index=False, **kwargs)


def _cell_label(model: str, input_kind: str) -> str:
    return f"{model_name(model)} model, {input_kind} input"


def format_interval(mean: float, low: float, high: float) -> str:
    """"mean [low, high]" with 3 decimals (1 for numbers of 100 or more); "mean —" when the
    interval is undefined (:func:`rvi._core.formatting.interval`)."""
    digits = 3 if max(abs(mean), abs(high) if math.isfinite(high) else 0) < 100 else 1
    return interval(mean, low, high, f".{digits}f")


def _seeds(count) -> str:
    return f"{int(count)} seed{'s' if int(count) != 1 else ''}"


def _fmt_cell(row) -> str:
    """"mean [95% interval] (S seeds)"."""
    return f"{format_interval(row['mean'], row['ci_low'], row['ci_high'])} ({_seeds(row['seeds'])})"


def direction(metric: str) -> str:
    """``higher is cleaner``, ``lower is more faithful``, ...: which way a metric improves."""
    info = METRICS[metric]
    better = "cleaner" if info.family == "cleanliness" else "more faithful"
    return f"{'higher' if info.higher_is_better else 'lower'} is {better}"


def metric_direction(metric: str) -> str:
    return f"{metric} ({direction(metric)})"


#: The footnote under a table that shows an undefined interval.
NO_INTERVAL_NOTE = (f"{NO_INTERVAL}: no interval could be computed; it needs two or more seeds "
                    "(or re-initializations, or images) where this run has one")


def verdict_table(result) -> pd.DataFrame:
    """The verdicts at a glance, one row per compared model and metric: ``metric``,
    ``direction``, the main difference (robust − natural, or model − reference, natural input)
    with its raw 95% interval, the verdict's Holm-adjusted p, the verdict in a word and the
    conditions it fails (:data:`rvi.analysis.verdicts.VERDICT_RULES`). Empty without verdicts."""
    models = result.model_set
    several = len(models.compared) > 1
    what = "robust − natural" if models == NATURAL_ROBUST else f"model − {models.reference}"
    rows = []
    for row in result.verdict_rows:
        word, _, failed = row["verdict"].partition(" (fails: ")
        rows.append({**({"model": model_name(row["model"])} if several else {}),
                     "metric": row["metric"], "direction": direction(row["metric"]),
                     f"{what} [95% interval]": interval(row["difference"], row["ci_low"],
                                                        row["ci_high"], "+.3g"),
                     "p (Holm)": p_value(row["p_holm"]), "verdict": word,
                     "failing conditions": failed.rstrip(")") or "none"})
    return pd.DataFrame(rows)


def accuracy_table(result, statistic: str = "mean") -> pd.DataFrame:
    """Models as rows, attacks as columns: accuracy in %, the mean (or ``"std"``) over seeds."""
    acc = result.accuracy
    table = (acc.groupby(["model", "attack"], sort=False)["accuracy"].agg(statistic) * 100)
    table = table.unstack()[list(dict.fromkeys(acc["attack"]))]
    table.index.name = "model"
    table.columns.name = None
    return table.reset_index()


def target_table(result) -> pd.DataFrame:
    """Per model and input: the share of images whose explained class is the model's
    prediction, and the mean probability the model gives it (where a deletion curve starts).
    Empty for records from before ``target_probability`` was recorded."""
    records = result.records
    if "target_probability" not in records.columns or \
            records["target_probability"].isna().all():
        return pd.DataFrame()
    rows = []
    for model, input_kind in cell_order(result):
        cell = records[(records["model"] == model) & (records["input"] == input_kind)]
        if cell.empty:
            continue
        rows.append({"model": model_name(model), "input": input_kind,
                     "explained class = prediction (%)":
                         100 * float((cell["target"] == cell["prediction"]).mean()),
                     "mean probability of the explained class":
                         float(cell["target_probability"].mean())})
    return pd.DataFrame(rows)


def _accuracy_markdown(result) -> str:
    mean = accuracy_table(result)
    if result.accuracy["seed"].nunique() < 2:
        return md_table(mean, floatfmt=".2f")
    std = accuracy_table(result, "std")
    text = mean.copy()
    for column in mean.columns[1:]:
        text[column] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(mean[column], std[column])]
    return md_table(text)


def cleanliness_table(result, method: str, reference: str = "clean") -> pd.DataFrame:
    """Metrics as rows, the cells as columns, each entry "mean [95% CI]". With
    ``reference="clean"`` all cells and (for the first method) the trivial explainers are shown;
    with ``"perturbed"`` only the adversarial-input cells. ``alignment`` always uses the image
    the model saw."""
    summary = result.summary
    order = cell_order(result)
    cells = order if reference == "clean" else [c for c in order if c[1] == "adversarial"]
    rows = []
    for metric in result.config.metrics:
        explainer = method if METRICS[metric].uses_map else "model"
        row = {"metric": metric_direction(metric)}
        for model, input_kind in cells:
            ref = "clean" if input_kind == "natural" else \
                ("perturbed" if explainer == "model" else reference)
            pick = summary[(summary["model"] == model) & (summary["input"] == input_kind)
                           & (summary["explainer"] == explainer) & (summary["metric"] == metric)
                           & (summary["reference"] == ref)]
            if not pick.empty:
                row[_cell_label(model, input_kind)] = _fmt_cell(pick.iloc[0])
        if method == result.config.methods[0] and METRICS[metric].uses_map \
                and reference == "clean":
            for trivial in ("image", "edge", "noise"):
                pick = summary[(summary["model"] == result.model_set.reference)
                               & (summary["input"] == "natural")
                               & (summary["explainer"] == trivial)
                               & (summary["metric"] == metric)]
                if not pick.empty:
                    row[f"control: {trivial}"] = _fmt_cell(pick.iloc[0])
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def difference_table(frame: pd.DataFrame, columns: list) -> pd.DataFrame:
    """``frame``'s ``columns`` plus the difference and its interval, seeds, images per seed,
    interval kind, p, Holm p (and ``role``), formatted as the tables show them."""
    out = frame[columns].copy()
    out["difference [95% interval]"] = [format_interval(r["difference"], r["ci_low"], r["ci_high"])
                                        for _, r in frame.iterrows()]
    out["seeds"] = frame["seeds"].astype(int)
    out["images per seed"] = frame["n_per_seed"].astype(int)
    out["interval"] = frame["interval"]
    out["p"] = [p_value(p) if np.isfinite(p) else "" for p in frame["p"]]
    out["p (Holm)"] = [p_value(p) if np.isfinite(p) else "" for p in frame["p_holm"]]
    if "role" in frame.columns:
        out["role"] = frame["role"]
    return out


def _interval_note(result) -> str:
    """What the intervals are, for the header."""
    seeds = len(result.config.seeds)
    if seeds > 1:
        return (f"intervals: 95% Student-t over the {seeds} per-seed (paired) means, "
                f"{seeds - 1} df")
    if is_compare(result):
        return (f"intervals: 95% percentile bootstrap over images ({result.config.bootstrap} "
                "resamples): a result for this one set of models on these images, not a claim "
                "about the training methods that made them")
    return (f"intervals: 95% percentile bootstrap over images ({result.config.bootstrap} "
            "resamples): these two models, these images")


def is_compare(result) -> bool:
    """Whether the result comes from :func:`rvi.compare` (models the user brought)."""
    return result.meta.get("kind") == "compare"


def _model_lines(result) -> list:
    """One header line per model the user brought: class, parameters, fingerprint(s)."""
    info = result.model_info
    lines = []
    for name in result.model_set.trained:
        rows = info[info["model"] == name] if not info.empty else info
        if rows.empty:
            lines.append(f"- model {name}")
            continue
        first = rows.iloc[0]
        prints = ", ".join(f[:12] for f in rows["fingerprint"])
        source = f", from {first['source']}" if "source" in rows and isinstance(
            first.get("source"), str) else ""
        role = " (reference)" if name == result.model_set.reference else ""
        lines.append(f"- model {name}{role}: {first['class']}, {int(first['parameters']):,} "
                     f"parameters, weights sha256 {prints}{source}")
    return lines


def _header(result) -> str:
    return "\n".join(map(md_escape, header_lines(result)))


def header_lines(result) -> list:
    """The tables' header as Markdown lines: ``# title``, a blank line, ``- `` items (models,
    attack, maps, images and seeds, intervals, machine, wall time)."""
    c, meta = result.config, result.meta
    source = "transferred from the other model" if c.transfer else "white-box against each model"
    if is_compare(result):
        lines = [f"# rvi compare: {', '.join(result.model_set.trained)} on {meta.get('data', '?')}",
                 ""] + _model_lines(result)
    else:
        lines = [f"# rvi benchmark: {c.model} on {c.dataset}", "",
                 f"- natural model: {c.natural.recipe_label}",
                 f"- robust model: {c.robust.recipe_label}"]
    lines += [
        f"- adversarial inputs: {c.attack.label}, {source}",
        f"- maps: {', '.join(c.methods)} (Captum; absolute value, channels summed); "
        f"target: {'true label' if c.target == 'true' else 'predicted label'}",
        f"- {meta.get('n_test', '?')} test images, seeds {', '.join(map(str, c.seeds))}; "
        f"{_interval_note(result)}",
    ]
    env = meta.get("environment")
    if env:
        lines.append(f"- machine: {env.get('processor')} ({env.get('cpu_count')} CPUs, "
                     f"{env.get('torch_threads')} torch threads), device {env.get('device')}; "
                     f"torch {env.get('torch')}, torchattacks {env.get('torchattacks')}, "
                     f"captum {env.get('captum')}, rvi {env.get('rvi')}")
    if "timings_seconds" in meta:
        lines.append(f"- wall time: {meta['timings_seconds'].get('total', float('nan')):.0f} s")
    return lines


def markdown(result) -> str:
    """The whole comparison as Markdown: accuracy, cleanliness, differences, controls,
    verdicts, cascading randomization and all-zero maps."""
    c = result.config
    several = len(c.seeds) > 1
    spread = " (seeds)"
    verdicts = verdict_table(result)
    parts = [_header(result), "", f"## Verdicts (natural input; each condition at p < {ALPHA:g}, "
                                  "Holm across the verdicts; details below)", "",
             md_table(verdicts) if not verdicts.empty else "(no paired differences)",
             "", f"## Accuracy (%{', mean ± sd over seeds' if several else ''})",
             "", _accuracy_markdown(result)]
    explained = target_table(result)
    if not explained.empty:
        parts += ["", f"## The class each {c.methods[0]} map explains (target {c.target}): "
                      "faithfulness curves start at the model's probability of it", "",
                  md_table(explained, floatfmt=".3f")]
    for method in c.methods:
        parts += ["", f"## Cleanliness of {method} maps, compared with the clean image "
                      f"(mean [95% interval]{spread})", "",
                  md_table(cleanliness_table(result, method))]
    parts += ["", f"## Adversarial inputs: {c.methods[0]} maps compared with the perturbed image",
              "", md_table(cleanliness_table(result, c.methods[0], "perturbed"))]
    diffs = result.differences
    main = diffs[diffs["explainer"].isin([c.methods[0], "model"])]
    models = result.model_set
    if not main.empty:
        several = len(models.compared) > 1
        title = "Robust - natural" if models == NATURAL_ROBUST else \
            f"Each model - {md_escape(models.reference)}"
        parts += ["", f"## {title}, paired over the same images (raw 95% intervals; p (Holm): "
                      "the verdict's intersection–union p, Holm-adjusted across verdicts, on the "
                      "rows a verdict uses; the other rows are descriptive)", "",
                  md_table(difference_table(main, (["model"] if several else [])
                                            + ["input", "metric", "reference"]))]
    controls = result.control_differences
    by_method = controls["role"] == METHOD_COMPARISON if not controls.empty else None
    if not controls.empty and not by_method.all():
        parts += ["", f"## Trained model - control ({c.methods[0]}, natural input, paired; role: "
                      "required for a verdict, or a reference map)", "",
                  md_table(difference_table(controls[~by_method], ["model", "metric", "control"]))]
    if not controls.empty and by_method.any():
        parts += ["", f"## Method comparison: {c.methods[0]} - the same model's plain gradient "
                      "(natural input, paired; compares attribution methods, not models: "
                      "reported, not required)", "",
                  md_table(difference_table(controls[by_method].drop(columns="role"),
                                            ["model", "metric"]))]
    tests = int(np.isfinite(diffs["p_holm"]).sum())
    parts += ["", f"## Verdict details (each an intersection–union test of its conditions at p "
                  f"< {ALPHA:g}; Holm correction across the {tests} verdicts; intervals shown are "
                  "the raw 95% ones)", ""]
    parts += [f"- {md_escape(line)}" for line in result.verdicts] or ["- (no paired differences)"]
    if not result.cascading.empty:
        parts += _randomization_markdown(result)
    mechanism = mechanism_table(result)
    if not mechanism.empty:
        parts += ["", f"## First-layer mechanism ({c.methods[0]}, natural input, first "
                      f"{int(result.mechanism['n'].iloc[0])} images: threshold channels of the "
                      "first convolution and the share of the map's mass through them)", "",
                  md_table(mechanism)]
    zero = result.records.groupby(["model", "input"], sort=False)["zero_map"].sum().astype(int)
    parts += ["", f"## All-zero {c.methods[0]} maps (scored 0 by convention)", "",
              md_table(zero.reset_index().rename(columns={"zero_map": "all-zero maps"}))]
    text = "\n".join(parts) + "\n"
    if re.search(rf"\d {NO_INTERVAL}", text):
        text += f"\n{NO_INTERVAL_NOTE}\n"
    return text


def _randomization_markdown(result) -> list:
    """The layer-randomization tables: scores and map similarities per step, and the test."""
    table = result.cascading
    method = table["method"].iloc[0]
    parts = []
    for mode, heading in (("cascading", "layers re-initialized from the output down, cumulative"),
                          ("independent", "one layer re-initialized at a time")):
        pick = table[table["mode"] == mode]
        if pick.empty:
            continue
        # the per-step curves: scores and same-image similarities (floors: the test below)
        pick = pick[pick["kind"].isin(["score", "similarity"])]
        wide = pick.groupby(["step", "layer", "model", "kind", "metric"], sort=False)["mean"] \
            .mean().unstack(["model", "kind", "metric"])
        wide.columns = [f"{m} / {'similarity: ' if k == 'similarity' else ''}{name}"
                        for m, k, name in wide.columns]
        parts += ["", f"## Layer randomization, {mode} ({method}; {heading}; mean over images "
                      "and seeds; similarity to the trained model's maps)", "",
                  md_table(wide.reset_index(), floatfmt=".3f")]
    shown = randomization_table(result)
    if not shown.empty:
        parts += ["", "## Model-randomization test (Adebayo et al. 2018), calibrated", "",
                  RANDOMIZATION_RULE, "", "Similarity of the fully randomized model's maps to "
                  "the trained maps of the same image and of another image, the trivial maps' "
                  "similarity to the trained maps, and the excess (same − other).", "",
                  md_table(shown, floatfmt=".3f")]
    return parts


def mechanism_table(result) -> pd.DataFrame:
    """The first-layer mechanism (:mod:`rvi.metrics.mechanism`) per trained model: its threshold
    channels (mean count over seeds), their thresholds (per seed), the share of the main
    method's mass through them and the share of that mass on the digit (mean, and the range
    over seeds with several); empty without the ``mechanism`` control."""
    frame = result.mechanism
    if frame.empty:
        return pd.DataFrame()
    rows = []
    for model, group in frame.groupby("model", sort=False):
        if group["threshold_channels"].isna().all():
            rows.append({"model": model_name(model), "seeds": len(group),
                         "threshold channels": "no convolution"})
            continue

        def spread(column):
            values = group[column].astype(float)
            if values.isna().all():
                return NO_INTERVAL
            text = f"{values.mean():.3f}"
            return text + (f" ({values.min():.3f}–{values.max():.3f})" if len(values) > 1 else "")

        rows.append({"model": model_name(model), "seeds": len(group),
                     "threshold channels": f"{group['threshold_channels'].astype(float).mean():g}",
                     "their thresholds": "; ".join(t or NO_INTERVAL for t in group["thresholds"]),
                     "mass through them": spread("threshold_share"),
                     "of it on the digit": spread("foreground_share")})
    return pd.DataFrame(rows)


def randomization_table(result) -> pd.DataFrame:
    """The model-randomization test (:func:`rvi.analysis.verdicts.randomization_test`) as the tables show
    it, one row per model, method and measure; empty without layer randomization."""
    if result.cascading.empty:
        return pd.DataFrame()
    test = randomization_test(result.cascading)
    if test.empty:
        return test
    text = test.rename(columns={"same": "same image", "floor": "other image (floor)",
                                "image_map": "image map", "edge_map": "edge map"})
    text["excess over the floor [95% interval]"] = [
        format_interval(r["excess"], r["ci_low"], r["ci_high"]) for _, r in test.iterrows()]
    return text[["model", "method", "measure", "same image", "other image (floor)",
                 "image map", "edge map", "excess over the floor [95% interval]", "seeds",
                 "draws", "interval", "outcome"]]


def latex(result) -> str:
    """Accuracy and main cleanliness tables as LaTeX ``tabular`` environments; every header,
    cell and caption is escaped (``%``, ``_``, ``&``, ... and ``±``), so the file compiles."""
    acc = accuracy_table(result)
    acc = acc.apply(lambda col: col.map(lambda v: f"{v:.2f}" if isinstance(v, float) else v))
    clean = cleanliness_table(result, result.config.methods[0])
    return (tex_frame(acc).to_latex(index=False, escape=False, caption=tex_escape("Accuracy (%)"))
            + "\n" + tex_frame(clean).to_latex(
                index=False, escape=False, caption=tex_escape(
                    f"Cleanliness of {result.config.methods[0]} maps (mean [95% CI])")))


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$"}


def tex_escape(text) -> str:
    """``text`` with LaTeX's special characters escaped (``±`` becomes ``$\\pm$``)."""
    return "".join(_TEX.get(char, char) for char in str(text))


def tex_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a frame of strings with every cell and column name escaped for LaTeX."""
    out = frame.apply(lambda col: col.map(tex_escape))
    out.columns = [tex_escape(c) for c in frame.columns]
    return out
