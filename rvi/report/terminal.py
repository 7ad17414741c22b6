"""The short summary ``rvi bench`` and ``rvi compare`` print: the answer first, in 100 columns.

Accuracy, then per metric the 2x2 headline (each trained model on natural and adversarial
input, main attribution method) with its interval and the verdict in a word or two, then why
each unsupported verdict fails, and where the full tables are. Every number comes from the
result's own tables (:mod:`rvi.report.tables`, :mod:`rvi.analysis.verdicts`); nothing is recomputed here.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import Optional

from .._core.formatting import NO_INTERVAL, interval
from ..analysis.verdicts import ALPHA
from ..metrics import METRICS
from .tables import accuracy_table, is_compare, model_name

WIDTH = 100


def _interval(mean: float, low: float, high: float) -> str:
    """``0.411 [0.281, 0.542]``; ``0.411 —`` when the interval is undefined."""
    finite = math.isfinite(low) and math.isfinite(high)
    digits = 3 if max([abs(mean)] + ([abs(low), abs(high)] if finite else [])) < 10 else 1
    return interval(mean, low, high, f".{digits}f")


def _short(verdict: str) -> tuple:
    """``(word, reason)`` of a verdict: ``("not supported", "controls, holm")``."""
    head, _, reason = verdict.partition(" (fails: ")
    return head.replace(" for the training methods", " (methods)"), reason.rstrip(")")


def _attack(label: str) -> str:
    """``PGD-40 eps=0.3 alpha=0.01875 x5 restarts`` as ``PGD-40x5`` (the eps is said once)."""
    name, restarts = label.split(" eps=")[0], re.search(r" x(\d+) restarts", label)
    return name + (f"x{restarts.group(1)}" if restarts else "") + \
        (" (no random start)" if "no random start" in label else "")


def _wrap(text: str) -> list:
    return textwrap.wrap(text, WIDTH, subsequent_indent="  ")


def _rows(header: list, rows: list) -> list:
    """Left-aligned columns two spaces apart."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    return ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
            for r in [header] + rows]


def _scope(result) -> str:
    seeds = len(result.config.seeds)
    if seeds > 1:
        return f"{seeds} seeds; intervals: 95% Student-t over per-seed means"
    who = "these models" if is_compare(result) else "these two models"
    return f"1 seed; intervals: 95% bootstrap over images ({who} only, not the training methods)"


def summary(result, folder: Optional[Path] = None, full_flag: str = "--full") -> str:
    """The summary text; ``folder``: where the full tables were saved (named at the end)."""
    c, meta = result.config, result.meta
    title = (f"rvi compare: {', '.join(result.model_set.trained)} on {meta.get('data', '?')}"
             if is_compare(result) else f"rvi bench: {c.model} on {c.dataset}")
    lines = [title] + _wrap(f"{meta.get('n_test', '?')} test images, {_scope(result)}") + [""]

    acc = accuracy_table(result)
    lines += _rows([f"accuracy (%), eps {c.attack.eps:g}"] + [_attack(k) for k in acc.columns[1:]],
                   [[model_name(r["model"])] + [f"{r[k]:.2f}" for k in acc.columns[1:]]
                    for _, r in acc.iterrows()])

    method = c.methods[0]
    trained = list(result.model_set.trained)
    verdicts = {(v["model"], v["metric"]): v["verdict"] for v in result.verdict_rows}
    one_compared = len(result.model_set.compared) == 1
    table = result.summary
    table = table[table["reference"] == "clean"]
    header = ["metric", "input"] + [model_name(m) for m in trained] + ["verdict"] * one_compared
    rows, undefined = [], False
    for metric in [m for m in METRICS if m in set(table["metric"])]:
        info = METRICS[metric]
        explainer = method if info.uses_map else "model"
        for input_kind in ("natural", "adversarial"):
            cells = []
            for model in trained:
                row = table[(table["model"] == model) & (table["input"] == input_kind)
                            & (table["explainer"] == explainer) & (table["metric"] == metric)]
                cell = "" if row.empty else _interval(*row.iloc[0][
                    ["mean", "ci_low", "ci_high"]].astype(float))
                undefined |= cell.endswith(NO_INTERVAL)
                cells.append(cell)
            if not any(cells):  # e.g. faithfulness, scored on natural inputs only
                continue
            first = input_kind == "natural"
            name = f"{metric} {'↑' if info.higher_is_better else '↓'}" if first else ""
            verdict = ""
            if one_compared and first:
                found = verdicts.get((result.model_set.compared[0], metric))
                verdict = _short(found)[0] if found else "descriptive"
            rows.append([name, input_kind] + cells + [verdict] * one_compared)
    lines += [""] + _wrap(f"{method} maps (alignment_*: the model's gradient), mean [95% "
                          "interval]; ↑/↓: higher/lower is better") + _rows(header, rows)
    if undefined:
        lines.append(f"{NO_INTERVAL}: no interval could be computed (too few seeds or images)")

    failing = [f"{metric}{'' if one_compared else f' ({model})'}: {_short(v)[1]}"
               for (model, metric), v in verdicts.items() if _short(v)[1]]
    reference = result.model_set.reference
    lines += [""] + _wrap(f"verdicts: each model vs {reference} on natural input, every "
                          f"condition at p < {ALPHA:g}, Holm across verdicts (rules: "
                          "docs/metrics.md)")
    if not one_compared:
        lines += [f"  {model} · {metric}: {_short(v)[0]}" for (model, metric), v in verdicts.items()]
    if failing:
        lines += _wrap("not supported because these conditions fail: " + "; ".join(failing))
    if folder is not None:
        lines += [""] + _wrap(f"full tables: {folder / 'tables.md'} (also .csv, .tex, "
                              f"summary.json; figures and records beside them); {full_flag} "
                              "prints the tables here")
    return "\n".join(lines) + "\n"
