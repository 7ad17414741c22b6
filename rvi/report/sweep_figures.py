"""Sweep figures: one per metric, the metric against robust accuracy and against training eps.

Each point is one training eps: the mean over its seeds with 95% t-intervals on both axes
(:attr:`rvi.report.sweep_result.SweepResult.score_summary`); the single seeds are drawn as small dots.
Natural inputs, maps compared with the clean image; failed models are left out (the title names
the eps points that had any).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._core.io import atomic_write


def _err(frame) -> np.ndarray:
    """(2, n) distances from the mean to the interval ends (0 where there is no interval)."""
    low = np.nan_to_num(frame["mean"] - frame["ci_low"])
    high = np.nan_to_num(frame["ci_high"] - frame["mean"])
    return np.vstack([low, high])


def metric_figure(result, metric: str):
    """The figure of ``metric`` (None when no score of it was kept)."""
    import matplotlib.pyplot as plt

    scores = result.score_summary
    scores = scores[(scores["metric"] == metric) & (scores["input"] == "natural")
                    & (scores["reference"] == "clean") & (scores["seeds"] > 0)]
    if scores.empty:
        return None
    acc = result.accuracy_summary
    robust = acc[(acc["attack"] == result.config.robustness)
                 & (acc["eval_eps"] == result.config.reference)].set_index("eps")
    per_model = result.scores
    per_model = per_model[(per_model["metric"] == metric) & (per_model["input"] == "natural")
                          & (per_model["reference"] == "clean") & ~per_model["failed"]]
    models = result.models.set_index(["eps", "seed"])["robustness"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for explainer, group in scores.groupby("explainer", sort=False):
        group = group.sort_values("eps")
        x = robust.reindex(group["eps"])
        line = axes[0].errorbar(100 * x["mean"], group["mean"], yerr=_err(group),
                                xerr=100 * _err(x), marker="o", capsize=3, label=explainer)
        axes[1].errorbar(group["eps"], group["mean"], yerr=_err(group), marker="o", capsize=3,
                         color=line[0].get_color(), label=explainer)
        seeds = per_model[per_model["explainer"] == explainer]
        seed_robust = models.loc[list(zip(seeds["eps"], seeds["seed"]))].to_numpy()
        axes[0].scatter(100 * seed_robust, seeds["mean"], s=8, alpha=0.4,
                        color=line[0].get_color())
        axes[1].scatter(seeds["eps"], seeds["mean"], s=8, alpha=0.4, color=line[0].get_color())
    c = result.config
    axes[0].set_xlabel(f"{c.robustness} accuracy at eps {c.reference:g} (%)")
    axes[1].set_xlabel("training eps")
    axes[0].set_ylabel(f"{metric} (natural input, mean over images)")
    axes[1].legend(fontsize=8)
    failed = result.failed_points()
    note = ("; failed models left out at eps " + ", ".join(f"{e:g}" for e in failed["eps"])
            if len(failed) else "")
    figure.suptitle(f"{metric}: {c.model} on {c.dataset}, seeds {', '.join(map(str, c.seeds))}"
                    f" (95% t-intervals over seeds){note}", fontsize=9)
    figure.tight_layout()
    return figure


def save_figures(result, folder: Path) -> list:
    """Write ``metric_<name>.png`` for every metric of the sweep; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric in result.config.metrics:
        figure = metric_figure(result, metric)
        if figure is None:
            continue
        path = Path(folder) / f"metric_{metric}.png"
        with atomic_write(path) as handle:
            figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    return paths
