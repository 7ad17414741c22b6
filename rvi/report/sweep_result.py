"""The result of a sweep: per-job records -> per-model frames -> tables, correlations, figures.

Job records (:func:`rvi.studies.sweep_job.run_job`) are the source of truth; everything here is a pure
function of them, so the same records give the same tables whichever engine computed them.
Intervals over seeds are Student-t intervals over per-seed values (:func:`rvi.analysis.stats.t_interval`);
rank correlations, their parametric intervals and permutation p-values come from
:func:`rvi.analysis.correlation.point_spearman`, the p-values Holm-adjusted over every correlation of the
sweep (:func:`rvi.analysis.stats.holm`). A model whose clean test accuracy is below :data:`FAILED_FACTOR`
x chance is *failed*: flagged in every table and left out of every mean, interval and correlation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd
from scipy import stats

from .._core.checks import check_path
from .._core.compat import upgrade_sweep_record
from .._core.formatting import NO_INTERVAL, interval, p_value
from .._core.io import atomic_write, saved_file
from ..analysis.correlation import EXACT_POINTS, PERMUTATIONS, permutation_p, point_spearman
from ..analysis.stats import holm, t_interval
from ..config import SweepConfig
from ..metrics import METRICS
from ..scoring.records import ScoreKey, frame_from_json, json_rows, read_record
from .sweep_figures import save_figures
from .tables import format_interval, tex_escape, tex_frame

#: A model is failed when its clean accuracy is below this many times chance (1 / classes).
FAILED_FACTOR = 2.0
SWEEP_FILE = "sweep.json"
SCORE_CELL = ["input", "explainer", "metric", "reference"]
AXES = ("rho_robustness", "rho_eps")
CORRELATION_COLUMNS = [*SCORE_CELL, *[f"{a}{s}" for a in AXES
                                      for s in ("", "_low", "_high", "_p", "_p_holm")],
                       "points", "models", "higher_is_better"]


def _summarize(frame: pd.DataFrame, by: list, value: str) -> pd.DataFrame:
    """Mean and 95% t-interval over the seeds of each group (failed models left out), with the
    counts of seeds used and of failed seeds."""
    rows = []
    for key, group in frame.groupby(by, sort=True, dropna=False):
        ok = group[~group["failed"]][value].to_numpy(dtype=np.float64)
        mean, low, high, _, seeds, _ = t_interval(ok[:, None] if len(ok) else np.empty((0, 1)))
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                     "mean": float(mean[0]) if len(ok) else np.nan, "ci_low": float(low[0]),
                     "ci_high": float(high[0]), "seeds": int(seeds[0]),
                     "failed_seeds": int(group["failed"].sum())})
    return pd.DataFrame(rows)


def _percent(mean: float, low: float, high: float) -> str:
    """Accuracy in %: ``mean [low, high]`` with two decimals (no interval with one seed)."""
    if not np.isfinite(low):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}]"


@dataclass(eq=False)
class SweepResult:
    """What :func:`rvi.run_sweep` returns.

    Attributes:
        config: the sweep's configuration.
        records: the job records (:func:`rvi.studies.sweep_job.run_job`), one per (eps, seed) that finished.
        failed: ``[{"job", "error"}]`` for jobs that failed twice (not in ``records``).
    """

    config: SweepConfig
    records: list
    failed: list = field(default_factory=list)

    # --- per-model frames ----------------------------------------------------------------

    @cached_property
    def models(self) -> pd.DataFrame:
        """One row per model: ``eps, seed, clean, robustness`` (accuracy under
        ``config.robustness`` at the reference eps), ``final_train_accuracy``, ``failed``, and
        the first-layer mechanism's ``threshold_share`` and ``threshold_channels`` (absent for
        a sweep whose records were written before rvi 0.12)."""
        ref, name = self.config.reference, self.config.robustness
        rows = []
        for record in self.records:
            acc = {(r["attack"], r["eval_eps"]): r["accuracy"] for r in record["accuracy"]}
            clean = acc[("clean", 0.0)]
            chance = 1.0 / record["model"]["num_classes"]
            mechanism = upgrade_sweep_record(record)["mechanism"]
            rows.append({"eps": record["job"]["eps"], "seed": record["job"]["seed"],
                         "clean": clean, "robustness": acc.get((name, ref), np.nan),
                         "final_train_accuracy": record["model"]["final_train_accuracy"],
                         "failed": clean < FAILED_FACTOR * chance,
                         "checkpoint": record["model"]["checkpoint"],
                         "threshold_share": _number(mechanism.get("threshold_share")),
                         "threshold_channels": _number(mechanism.get("threshold_channels"))})
        columns = ["eps", "seed", "clean", "robustness", "final_train_accuracy", "failed",
                   "checkpoint", "threshold_share", "threshold_channels"]
        frame = pd.DataFrame(rows, columns=columns).sort_values(["eps", "seed"],
                                                                ignore_index=True)
        if frame["threshold_share"].isna().all():  # a sweep from before rvi 0.12
            frame = frame.drop(columns=["threshold_share", "threshold_channels"])
        return frame

    def _failed(self) -> dict:
        return {(r.eps, r.seed): r.failed for r in self.models.itertuples()}

    @cached_property
    def accuracy(self) -> pd.DataFrame:
        """One row per (model, attack, evaluation eps): ``eps, seed, attack, eval_eps, label, n,
        accuracy, failed`` (``attack="clean"`` has ``eval_eps=0``)."""
        failed = self._failed()
        rows = [{"eps": rec["job"]["eps"], "seed": rec["job"]["seed"], **row,
                 "failed": failed[(rec["job"]["eps"], rec["job"]["seed"])]}
                for rec in self.records for row in rec["accuracy"]]
        return pd.DataFrame(rows, columns=["eps", "seed", "attack", "eval_eps", "label", "n",
                                           "accuracy", "failed"])

    @cached_property
    def scores(self) -> pd.DataFrame:
        """One row per (model, input, score): the mean over images, ``eps, seed, input,
        explainer, metric, reference, mean, failed``."""
        failed = self._failed()
        rows = []
        for rec in self.records:
            eps, seed = rec["job"]["eps"], rec["job"]["seed"]
            for kind, means in rec["means"].items():
                for column, mean in means.items():
                    rows.append({"eps": eps, "seed": seed, "input": kind,
                                 **ScoreKey.from_column(column)._asdict(),
                                 "mean": np.nan if mean is None else mean,
                                 "failed": failed[(eps, seed)]})
        return pd.DataFrame(rows, columns=["eps", "seed", *SCORE_CELL, "mean", "failed"]) \
            .sort_values(["eps", "seed", *SCORE_CELL], ignore_index=True)

    def images(self) -> pd.DataFrame:
        """Per-image records of every model: ``eps`` and the pipeline's record columns
        (``seed, input, image, label, target, prediction, correct, zero_map`` and one column
        per score, ``explainer/metric/reference``)."""
        frames = []
        for rec in self.records:
            frame = frame_from_json(rec["records"])
            frame.insert(0, "eps", rec["job"]["eps"])
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    # --- aggregates ----------------------------------------------------------------------

    @cached_property
    def accuracy_summary(self) -> pd.DataFrame:
        """Per (eps, attack, eval_eps): accuracy mean and 95% t-interval over seeds."""
        return _summarize(self.accuracy, ["eps", "attack", "eval_eps"], "accuracy")

    @cached_property
    def score_summary(self) -> pd.DataFrame:
        """Per (eps, input, explainer, metric, reference): mean and 95% t-interval over seeds of
        the per-model means."""
        return _summarize(self.scores, ["eps", *SCORE_CELL], "mean")

    @cached_property
    def correlations(self) -> pd.DataFrame:
        """Per score: Spearman's rho of its per-eps mean against the per-eps mean robustness
        (``rho_robustness``) and against the training eps (``rho_eps``), each with a 95%
        parametric interval (``config.bootstrap`` draws), a permutation p-value (``_p``) and
        that p Holm-adjusted over every correlation of the frame, both axes (``_p_holm``);
        failed models left out."""
        ok = self.scores[~self.scores["failed"]]
        models = self.models.set_index(["eps", "seed"])["robustness"]
        rows = []
        for key, group in ok.groupby(SCORE_CELL, sort=False):
            robust = models.loc[list(zip(group["eps"], group["seed"]))].to_numpy()
            args = dict(resamples=self.config.bootstrap, seed=0)
            vs_rob = point_spearman(group["eps"], robust, group["mean"], x_bounds=(0.0, 1.0),
                                    **args)
            vs_eps = point_spearman(group["eps"], group["eps"], group["mean"], **args)
            row = {**dict(zip(SCORE_CELL, key)), "points": vs_rob["points"],
                   "models": vs_rob["models"],
                   "higher_is_better": METRICS[key[2]].higher_is_better}
            for axis, out in zip(AXES, (vs_rob, vs_eps)):
                row.update({axis: out["rho"], f"{axis}_low": out["ci_low"],
                            f"{axis}_high": out["ci_high"], f"{axis}_p": out["p"]})
            rows.append(row)
        frame = pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
        if len(frame):
            p = holm(frame[[f"{a}_p" for a in AXES]].to_numpy(dtype=np.float64).reshape(-1))
            frame[[f"{a}_p_holm" for a in AXES]] = p.reshape(len(frame), len(AXES))
        return frame

    # --- tables --------------------------------------------------------------------------

    def failed_points(self) -> pd.DataFrame:
        """Eps points with failed models: ``eps, failed, seeds, clean`` (mean clean accuracy of
        the failed ones) and ``final_train_accuracy``."""
        m = self.models
        bad = m[m["failed"]].groupby("eps").agg(failed=("seed", "size"), clean=("clean", "mean"),
                                                final_train_accuracy=("final_train_accuracy",
                                                                      "mean"))
        bad["seeds"] = m.groupby("eps")["seed"].size().reindex(bad.index)
        return bad.reset_index()

    def accuracy_table(self) -> pd.DataFrame:
        """Rows: training eps; columns: trained status, clean accuracy and each attack at the
        reference eps and at the model's own eps, as ``mean [95% interval]`` in %."""
        ref = self.config.reference
        summary = self.accuracy_summary
        table = {}
        for row in summary.itertuples():
            text = "—" if row.seeds == 0 else _percent(row.mean, row.ci_low, row.ci_high)
            cells = table.setdefault(row.eps, {})
            if row.attack == "clean":
                cells["clean"] = text
                continue
            if row.eval_eps == ref:
                cells[f"{row.attack} @{ref:g} (reference)"] = text
            if row.eval_eps == row.eps:
                cells[f"{row.attack} @own eps"] = text
            if row.eval_eps not in (ref, row.eps):
                cells[f"{row.attack} @{row.eval_eps:g}"] = text
        out = pd.DataFrame.from_dict(table, orient="index").sort_index()
        out = out[["clean", *[c for c in out.columns if c != "clean"]]]
        counts = self.models.groupby("eps").agg(seeds=("seed", "size"), failed=("failed", "sum"))
        status = [f"{n - f}/{n} ok" if f == 0 else f"FAILED {f}/{n} (chance-level clean accuracy)"
                  for n, f in zip(counts["seeds"], counts["failed"])]
        out.insert(0, "models", pd.Series(status, index=counts.index).reindex(out.index))
        out.index.name = "train eps"
        return out.reset_index().fillna("—")

    def correlation_table(self) -> pd.DataFrame:
        """The rank correlations, formatted: ``rho [95% interval]``, permutation p and Holm p
        for each axis."""
        c = self.correlations
        if c.empty:
            return pd.DataFrame()

        def fmt(prefix):
            return [interval(r, lo, hi, ".2f") if np.isfinite(r) else NO_INTERVAL
                    for r, lo, hi in zip(c[prefix], c[prefix + "_low"], c[prefix + "_high"])]

        def fmt_p(column):
            return [p_value(p) for p in c[column]]

        columns = {**{k: c[k] for k in SCORE_CELL},
                   "higher is": np.where(c["higher_is_better"], "better", "worse")}
        for axis, name in zip(AXES, (f"{self.config.robustness} accuracy", "train eps")):
            columns.update({f"rho vs {name}": fmt(axis), f"p ({name})": fmt_p(f"{axis}_p"),
                            f"Holm p ({name})": fmt_p(f"{axis}_p_holm")})
        return pd.DataFrame({**columns, "eps points": c["points"], "models": c["models"]})

    def robust_only(self) -> "SweepResult":
        """The sweep without its natural point (train eps 0): the trend among robust models
        alone, where the robustness axis has no tie at 0.00% with the natural models."""
        grid = tuple(e for e in self.config.eps_grid if e > 0)
        return SweepResult(config=replace(self.config, eps=grid),
                           records=[r for r in self.records if r["job"]["eps"] > 0])

    def change_by_first_robust_eps(self) -> pd.DataFrame:
        """Where each natural-input score changes along the grid: the per-eps means at train eps 0,
        the first eps above 0 and the largest, and the share of the whole change (0 to largest)
        already made at the first eps above 0 (NaN unless both segments move the same way).
        Columns: ``explainer, metric, eps 0, eps FIRST, eps LARGEST, share by eps FIRST``."""
        s = self.score_summary
        s = s[(s["input"] == "natural") & (s["reference"] == "clean")]
        grid = sorted(self.models[~self.models["failed"]]["eps"].unique())
        if len(grid) < 3 or grid[0] != 0:
            return pd.DataFrame()
        rows = []
        for (explainer, metric), group in s.groupby(["explainer", "metric"], sort=False):
            means = group.set_index("eps")["mean"]
            start, first, last = means.get(grid[0]), means.get(grid[1]), means.get(grid[-1])
            one_way = (first - start) * (last - first) >= 0 and last != start
            rows.append({"explainer": explainer, "metric": metric, "eps 0": start,
                         f"eps {grid[1]:g}": first, f"eps {grid[-1]:g}": last,
                         f"share by eps {grid[1]:g}":
                             (first - start) / (last - start) if one_way else np.nan})
        return pd.DataFrame(rows)

    def mechanism_table(self) -> pd.DataFrame:
        """Per training eps: the first layer's threshold channels (mean count) and the share of
        the main method's mass through them (mean [95% Student-t interval] over seeds), so the
        eps at which the filters appear can be read beside the scores; empty for records from
        before rvi 0.12."""
        if "threshold_share" not in self.models.columns:
            return pd.DataFrame()
        models = self.models[~self.models["failed"]].dropna(subset=["threshold_share"])
        if models.empty:
            return pd.DataFrame()
        rows = []
        for eps, group in models.groupby("eps"):
            mean, low, high, *_ = t_interval(group[["threshold_share"]].to_numpy(dtype=float))
            rows.append({"train eps": f"{eps:g}", "seeds": len(group),
                         "threshold channels": f"{group['threshold_channels'].mean():g}",
                         "mass through them": interval(mean[0], low[0], high[0])})
        return pd.DataFrame(rows)

    def robustness_ties(self) -> str:
        """A note on eps points whose mean robustness is tied ("" if none): they share an
        average rank, which bounds ``|rho|`` and the smallest p against robustness."""
        m = self.models[~self.models["failed"]].groupby("eps")["robustness"].mean().dropna()
        tied = m[m.duplicated(keep=False)]
        if tied.empty:
            return ""
        c = self.config
        groups = "; ".join(f"{100 * v:.2f}% at train eps {', '.join(f'{e:g}' for e in g.index)}"
                           for v, g in tied.groupby(tied))
        best = stats.spearmanr(m, stats.rankdata(m, method="ordinal")).statistic
        p_min = permutation_p(m, stats.rankdata(m, method="ordinal"))
        broken = " (0.00%: the attack breaks every such model on every evaluated image)" \
            if (tied == 0).any() else ""
        return (f"Ties on the robustness axis: mean {c.robustness} accuracy at eps "
                f"{c.reference:g} is {groups}{broken}. The axis cannot order tied points: they "
                f"share an average rank, so |rho vs {c.robustness} accuracy| is at most "
                f"{best:.2f} over these {len(m)} points and its permutation p at least "
                f"{p_min:.2g}. The train-eps axis has no ties.")

    def metric_table(self, explainer: str, input_kind: str = "natural") -> pd.DataFrame:
        """Rows: training eps; columns: each metric of ``explainer`` on ``input_kind`` inputs
        (against the clean image), ``mean [95% interval]`` over seeds."""
        s = self.score_summary
        s = s[(s["explainer"] == explainer) & (s["input"] == input_kind)
              & (s["reference"] == "clean")]
        if s.empty:
            return pd.DataFrame()
        s = s.assign(text=[("—" if n == 0 else format_interval(m, lo, hi))
                           for m, lo, hi, n in zip(s["mean"], s["ci_low"], s["ci_high"], s["seeds"])])
        table = s.pivot(index="eps", columns="metric", values="text")
        table.index.name = "train eps"
        table.columns.name = None
        return table.reset_index()

    def to_markdown(self) -> str:
        c = self.config
        p_values = self.correlations[[f"{a}_p" for a in AXES]].to_numpy(dtype=np.float64)
        tests = int(np.isfinite(p_values).sum())
        parts = [f"# rvi sweep: {c.model} on {c.dataset}", "",
                 f"- training eps: {', '.join(f'{e:g}' for e in c.eps_grid)} "
                 "(0: natural; else PGD-7, step eps/3, rvi.studies.sweep.sweep_recipe); seeds "
                 f"{', '.join(map(str, c.seeds))}",
                 f"- robustness axis: {c.robustness} accuracy at the reference eps {c.reference:g}"
                 f"; adversarial inputs: PGD-7 at {c.reference:g}",
                 "- intervals: 95% Student-t over seeds; rank correlations: Spearman over the "
                 "per-eps means, 95% interval from drawing each eps point's pair of means from "
                 f"its bivariate Student-t over seeds ({c.bootstrap} draws); p: permutation "
                 "test of the per-eps means (two-sided; exact over all k! orderings up to "
                 f"{EXACT_POINTS} points, else {PERMUTATIONS} random ones), Holm-adjusted over "
                 f"all {tests} correlations of this sweep (docs/sweep.md)",
                 f"- failed model: clean accuracy below {FAILED_FACTOR:g} x chance; flagged and "
                 "left out of every mean, interval and correlation", ""]
        bad = self.failed_points()
        for row in bad.itertuples():
            parts.append(f"**eps {row.eps:g}: {row.failed} of {row.seeds} models failed to "
                         f"train** (clean {100 * row.clean:.2f}%, final training accuracy "
                         f"{100 * row.final_train_accuracy:.2f}%)")
        if self.failed:
            parts += ["", "## Jobs that failed twice (not in any table)", ""]
            parts += [f"- eps {f['job']['eps']:g}, seed {f['job']['seed']}: {f['error']}"
                      for f in self.failed]
        parts += ["", "## Accuracy (%, mean [95% interval] over seeds)", "",
                  self.accuracy_table().to_markdown(index=False)]
        mechanism = self.mechanism_table()
        if not mechanism.empty:
            parts += ["", "## First-layer threshold channels (rvi.metrics.mechanism; mean [95% interval] "
                          "over seeds)", "", mechanism.to_markdown(index=False)]
        corr = self.correlation_table()
        if not corr.empty:
            parts += ["", "## Rank correlation with robustness (Spearman)", "",
                      corr.to_markdown(index=False)]
            ties = self.robustness_ties()
            parts += ["", ties] if ties else []
        robust = self.robust_only()
        corr = robust.correlation_table() if len(robust.config.eps_grid) >= 3 else pd.DataFrame()
        if not corr.empty:
            parts += ["", "## Rank correlation among the robust models alone (train eps > 0; its "
                          "own Holm family)", "", corr.to_markdown(index=False)]
        change = self.change_by_first_robust_eps()
        if not change.empty:
            parts += ["", "## Where the change happens: natural-input means at train eps 0, the "
                          "first robust eps and the largest, and the share of the whole change "
                          "made by the first robust eps (— where the score does not move one "
                          "way)", "",
                      change.astype(object).where(change.notna(), None)
                      .to_markdown(index=False, floatfmt=".3f", missingval="—")]
        for explainer in [*c.methods, "model"]:
            table = self.metric_table(explainer)
            if not table.empty:
                parts += ["", f"## {explainer}: natural inputs, compared with the clean image "
                              "(mean [95% interval] over seeds)", "", table.to_markdown(index=False)]
        return "\n".join(parts) + "\n"

    def to_csv(self) -> str:
        """The score summary (every eps, input and score) as CSV."""
        return self.score_summary.to_csv(index=False)

    def to_latex(self) -> str:
        """Accuracy and rank-correlation tables as LaTeX ``tabular`` environments."""
        parts = [tex_frame(self.accuracy_table().astype(str)).to_latex(
            index=False, escape=False, caption=tex_escape("Accuracy (%, mean [95% CI])"))]
        corr = self.correlation_table()
        if not corr.empty:
            parts.append(tex_frame(corr.astype(str)).to_latex(
                index=False, escape=False, caption=tex_escape(
                    "Spearman rank correlations over the per-eps means (95% parametric "
                    "interval; permutation p; Holm p over the sweep's correlations)")))
        return "\n".join(parts)

    def summary_dict(self) -> dict:
        return {"config": self.config.to_dict(), "failed_jobs": self.failed,
                "models": json_rows(self.models), "accuracy": json_rows(self.accuracy_summary),
                "scores": json_rows(self.score_summary),
                "correlations": json_rows(self.correlations)}

    # --- files ---------------------------------------------------------------------------

    def save(self, folder: Union[str, Path, None] = None, *, figures: bool = True) -> Path:
        """Write tables (``tables.md``, ``.tex``, CSVs, ``summary.json``), one figure per metric
        and ``sweep.json`` (config, failed jobs, record files) into ``folder`` (default:
        ``config.out_dir``), each file atomically; the job records stay in ``jobs/``."""
        folder = Path(folder if folder is not None else self.config.out_dir)
        check_path("folder", folder)
        texts = {
            "tables.md": self.to_markdown(), "tables.tex": self.to_latex(),
            "scores.csv": self.to_csv(),
            "accuracy.csv": self.accuracy_summary.to_csv(index=False),
            "correlations.csv": self.correlations.to_csv(index=False),
            "models.csv": self.models.to_csv(index=False),
            "summary.json": json.dumps(self.summary_dict(), indent=2, allow_nan=False),
            SWEEP_FILE: json.dumps({"config": self.config.to_dict(), "failed": self.failed,
                                    "keys": [r["key"] for r in self.records]},
                                   indent=2, allow_nan=False),
        }
        for name, text in texts.items():
            with atomic_write(folder / name, "w") as handle:
                handle.write(text)
        if figures:
            save_figures(self, folder)
        return folder

    @classmethod
    def load(cls, folder: Union[str, Path]) -> "SweepResult":
        """Rebuild a saved sweep from ``sweep.json`` and the job records it lists."""
        check_path("folder", folder)
        data = json.loads(saved_file(folder, SWEEP_FILE, "rvi sweep").read_text())
        keys = set(data["keys"])
        records = [read_record(p) for p in sorted((Path(folder) / "jobs").glob("*.json.gz"))
                   if p.name[:-len(".json.gz")].rsplit("-", 1)[-1] in keys]
        return cls(config=SweepConfig.from_dict(data["config"]), records=records,
                   failed=data["failed"])


def _number(value) -> float:
    """A stored number, NaN for None (a JSON null) or a missing entry."""
    return np.nan if value is None else float(value)
