"""Seaborn/matplotlib figures of a benchmark result (PNG), drawn from its records and examples
through the same helpers as the tables (:mod:`rvi.report.tables`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from .._core.io import atomic_write
from ..analysis.stats import LEVEL, mean_over_draws
from ..metrics import METRICS
from .tables import cell_order, is_compare, metric_direction, model_name


def save_figures(result, folder: Path) -> list:
    """Write every figure as PNG into ``folder``; returns the paths."""
    import matplotlib  # imported when drawing: choosing the Agg backend must not touch users' plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    # every text literally: a model named "a$b$" is not math text (which fails at savefig)
    with matplotlib.rc_context({"text.parse_math": False}):
        for name, draw in (("saliency_grid.png", saliency_grid), ("scores.png", score_distributions),
                           ("accuracy.png", accuracy_chart), ("cascading.png", cascading_chart),
                           ("first_layer.png", first_layer_filters)):
            figure = draw(result)
            if figure is None:
                continue
            with atomic_write(folder / name) as handle:
                figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
            plt.close(figure)
            paths.append(folder / name)
    return paths


#: At most this many panels side by side in the per-metric figures; more go on further rows.
MAX_COLUMNS = 4


def panel_grid(count: int, width: float, height: float):
    """A figure of ``count`` panels of ``width`` x ``height`` inches, at most :data:`MAX_COLUMNS`
    to a row; returns ``(figure, the count axes in reading order)``, spare grid cells hidden."""
    import matplotlib.pyplot as plt

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    columns = min(count, MAX_COLUMNS)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows),
                             squeeze=False)
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def title_grid(fig, title: str) -> None:
    """``title`` above the panels in a band of fixed height, however many rows there are, then
    the panels laid out tightly below it."""
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=11, y=1 - 0.08 / height, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.32 / height))


def saliency_grid(result):
    """For k test images: the image, the adversarial images and the main method's map in each
    cell (each map scaled to its own maximum)."""
    import matplotlib.pyplot as plt

    ex = result.examples
    if not ex:
        return None
    columns = [("clean image", np.array(ex["clean"]), "gray")]
    for model in result.model_set.trained:
        columns.append((f"{model} model\nclean input", np.array(ex["maps"][f"{model}/natural"]),
                        "inferno"))
        columns.append((f"adversarial input\n(vs {model})", np.array(ex["adversarial"][model]),
                        "gray"))
        columns.append((f"{model} model\nadversarial input",
                        np.array(ex["maps"][f"{model}/adversarial"]), "inferno"))
    for control in result.model_set.controls:
        if f"{control}/natural" in ex["maps"]:
            title = model_name(control).replace(" of ", "\nof ") + "\nclean input"
            columns.append((title,
                            np.array(ex["maps"][f"{control}/natural"]), "inferno"))
    k = len(ex["labels"])
    fig, axes = plt.subplots(k, len(columns), figsize=(1.55 * len(columns) + 0.8, 1.6 * k + 0.6),
                             squeeze=False)
    image = None
    for j, (title, stack, cmap) in enumerate(columns):
        for i in range(k):
            data = stack[i]
            if cmap == "inferno":
                peak = data.max()
                data = data / peak if peak > 0 else data
            shown = axes[i, j].imshow(data, cmap=cmap, vmin=0, vmax=1)
            image = shown if cmap == "inferno" else image
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(title, fontsize=8)
            if j == 0:
                axes[i, j].set_ylabel(f"label {ex['labels'][i]}", fontsize=8)
    what = result.meta.get("data", "?") if is_compare(result) else \
        f"{result.config.model} on {result.config.dataset}"
    fig.suptitle(f"{ex['method']} saliency maps ({what}; attack {result.config.attack.label})",
                 fontsize=10)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, fraction=0.02, pad=0.01)
        bar.set_label("|attribution| / its max (maps); pixel value (images)", fontsize=8)
    return fig


def score_distributions(result):
    """Per-cell box plots of each metric of the main method, one panel per metric in rows of at
    most :data:`MAX_COLUMNS` (cleanliness against the clean image, faithfulness and alignment on
    the input the model saw), with the trivial explainers' means as grey lines. Boxes are drawn
    from per-cell quartiles, so large results stay fast."""
    import seaborn as sns

    method = result.config.methods[0]
    records = result.records
    metrics = list(result.config.metrics)
    order = cell_order(result)
    in_order = list(dict.fromkeys(m for m, _ in order))
    colors = dict(zip(in_order, sns.color_palette(n_colors=max(3, len(in_order)))))
    cells = {cell: records[(records["model"] == cell[0]) & (records["input"] == cell[1])]
             for cell in order}
    fig, axes = panel_grid(len(metrics), 3.6, 4.6)
    for ax, metric in zip(axes, metrics):
        info = METRICS[metric]
        explainer = method if info.uses_map else "model"
        data, names, facecolors = [], [], []
        for (model, input_kind), rows in cells.items():
            against_clean = input_kind == "natural" or (info.uses_map
                                                        and info.family == "cleanliness")
            column = f"{explainer}/{metric}/{'clean' if against_clean else 'perturbed'}"
            values = rows[column].dropna().to_numpy() if column in rows else np.array([])
            if len(values):
                data.append(values)
                names.append(f"{model_name(model)} model,\n{input_kind} input")
                facecolors.append(colors[model])
        if not data:
            ax.set_visible(False)
            continue
        boxes = ax.boxplot(data, showfliers=False, patch_artist=True, widths=0.6)
        for patch, color in zip(boxes["boxes"], facecolors):
            patch.set_facecolor(color)
        natural = cells[(result.model_set.reference, "natural")]
        # Trivial explainers are on another scale for unbounded metrics (inner): skip them there.
        for trivial, style in (("image", "--"), ("edge", ":"), ("noise", "-.")) \
                if np.isfinite(info.high) else ():
            column = f"{trivial}/{metric}/clean"
            if column in natural and natural[column].notna().any():
                ax.axhline(natural[column].mean(), color="gray", linestyle=style, linewidth=1,
                           label=f"control: {trivial} (mean)")
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels(names, fontsize=7, rotation=35, ha="right")
        ax.set_title(metric_direction(metric), fontsize=9)
        ax.set_ylabel(f"{metric} per image")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    title_grid(fig, f"{method} maps per cell: cleanliness against the clean image, faithfulness "
                    "and alignment on the input the model saw")
    return fig


def accuracy_chart(result):
    """Grouped bars: accuracy (%) per attack and model."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    acc = result.accuracy.copy()
    acc["accuracy (%)"] = acc["accuracy"] * 100
    fig, ax = plt.subplots(figsize=(1.8 * acc["attack"].nunique() + 2.5, 4))
    sns.barplot(data=acc, x="attack", y="accuracy (%)", hue="model", ax=ax, errorbar=None)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_xlabel("evaluation")
    n = int(acc["n"].max())
    what = ", ".join(result.model_set.trained) + f" on {result.meta.get('data', '?')}" \
        if is_compare(result) else f"{result.config.model} on {result.config.dataset}"
    ax.set_title(f"Accuracy of {what} "
                 f"(up to {n} test images)", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig


def cascading_chart(result):
    """Cascading randomization: each map metric and each similarity to the trained maps as the
    layers are re-initialized from the output down, per model, one panel each in rows of at most
    :data:`MAX_COLUMNS`; bands are 95% t-intervals over seeds."""
    import seaborn as sns

    casc = mean_over_draws(result.cascading)  # the band is over seeds, as in the tables
    if casc.empty:
        return None
    # the curves (floors and trivial maps are in the model-randomization table)
    casc = casc[(casc["mode"] == "cascading") & casc["kind"].isin(["score", "similarity"])]
    panels = list(dict.fromkeys(zip(casc["kind"], casc["metric"])))
    fig, axes = panel_grid(len(panels), 3.6, 3.8)
    for ax, (kind, metric) in zip(axes, panels):
        pick = casc[(casc["kind"] == kind) & (casc["metric"] == metric)]
        seeds = pick["seed"].nunique()
        # the tables' seed-level interval (Student-t over per-seed means), not a bootstrap
        band = ("se", scipy_stats.t.ppf(0.5 + LEVEL / 2, seeds - 1)) if seeds > 1 else None
        sns.lineplot(data=pick, x="step", y="mean", hue="model", marker="o", ax=ax,
                     errorbar=band)
        layers = pick.drop_duplicates("step").sort_values("step")["layer"].tolist()
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(["trained" if name == "none" else f"+{name}" for name in layers],
                           rotation=45, fontsize=7)
        ax.set_xlabel("layers re-initialized (from the output down)")
        ax.set_ylabel(f"mean {metric}")
        ax.set_title(metric_direction(metric) if kind == "score" else f"{metric} similarity to the "
                     "trained map", fontsize=9)
    title_grid(fig, f"Cascading randomization ({casc['method'].iloc[0]} maps)")
    return fig


def first_layer_filters(result):
    """One row per trained model: its first convolution's filters (channel mean, each on its own
    symmetric colour scale), a threshold channel titled with the level it opens at; None
    without the ``mechanism`` control's examples."""
    import matplotlib.pyplot as plt

    layers = result.examples.get("first_layer") or {}
    if not layers:
        return None
    columns = max(len(layer["weights"]) for layer in layers.values())
    fig, axes = plt.subplots(len(layers), columns, figsize=(0.9 * columns + 1, 1.1 * len(layers)),
                             squeeze=False)
    for row, (model, layer) in enumerate(layers.items()):
        for column in range(columns):
            ax = axes[row, column]
            ax.set_xticks([])
            ax.set_yticks([])
            if column >= len(layer["weights"]):
                ax.set_visible(False)
                continue
            weights = np.array(layer["weights"][column])
            scale = float(np.abs(weights).max()) or 1.0
            ax.imshow(weights, cmap="RdBu_r", vmin=-scale, vmax=scale)
            level = layer["thresholds"][column]
            if level is not None:
                ax.set_title(f"opens at {level:.2f}", fontsize=7)
            if column == 0:
                ax.set_ylabel(model_name(model), fontsize=8)
    fig.suptitle("First-layer filters (red: positive weights)", fontsize=10)
    fig.tight_layout()
    return fig
