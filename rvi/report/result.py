"""The result of a benchmark run: per-image records plus what is derived from them.

Records are the source of truth (RobustBench habit): every table, interval, difference, verdict
and figure is recomputed from them by pure functions, so a saved result can be re-rendered
without touching a model.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence, Union

import pandas as pd

from .._core.checks import check_bool, check_path
from .._core.compat import RESULT_FORMATS, upgrade_result
from .._core.io import atomic_write, file_lock, lock_path_of, saved_file
from ..analysis import stats, verdicts
from ..config import BenchmarkConfig
from ..errors import ResultNotSavedError
from ..scoring.records import (NATURAL_ROBUST, ModelSet, frame_from_json, frame_to_json, json_rows,
                               seed_mean_table)
from . import html, tables
from .figures import save_figures

#: The format :meth:`BenchmarkResult.to_json` writes; :meth:`~BenchmarkResult.from_json` reads
#: every one of ``RESULT_FORMATS`` (1 stored numbers as JSON lists; 1 and 2 have no ``models``
#: entry: they are natural vs robust, :data:`rvi.scoring.records.NATURAL_ROBUST`).
RESULT_FORMAT = RESULT_FORMATS[-1]
RESULT_FILE = "result.json.gz"
#: Every file :meth:`BenchmarkResult.save` writes; nothing else in a result folder is touched.
OWNED_FILES = (RESULT_FILE, "tables.md", "summary.csv", "tables.tex", "accuracy.csv",
               "differences.csv", "controls.csv", "summary.json", "seed_means.csv", "saliency_grid.png",
               "scores.png", "accuracy.png", "cascading.png", "first_layer.png",
               html.HTML_FILE)


@dataclass(eq=False)
class BenchmarkResult:
    """What :func:`rvi.run_benchmark` returns.

    Attributes:
        config: the full configuration that produced the result.
        records: one row per (seed, model, input, image): ``label``, ``target``, ``prediction``,
            ``correct``, ``zero_map`` and score columns ``explainer/metric/reference``.
        accuracy: one row per (seed, model, attack): ``accuracy`` in [0, 1] and ``n``.
        cascading: one row per (seed, model, metric, step): mean score with layers from the
            output down re-initialized (step 0: none).
        examples: a few test images, their adversarial versions and maps, for the figures.
        meta: versions, machine, timings and training summaries.
        mechanism: one row per (seed, trained model) with the ``mechanism`` control:
            ``threshold_channels``, ``thresholds`` (space-separated), ``threshold_share`` and
            ``foreground_share`` (:func:`rvi.metrics.mechanism.mechanism_summary`), ``n`` images; empty
            without it (and for results from before rvi 0.12).
        models: which models were compared (:meth:`rvi.scoring.records.ModelSet.to_dict`: ``trained``,
            ``reference``, ``random_weights``) and ``info``, one row per (seed, trained model):
            class, parameter count and weights fingerprint (:func:`rvi.studies.benchmark.describe_model`);
            None for results from before model sets (natural vs robust).
    """

    config: BenchmarkConfig
    records: pd.DataFrame
    accuracy: pd.DataFrame
    cascading: pd.DataFrame = field(default_factory=pd.DataFrame)
    examples: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    models: Optional[dict] = None
    mechanism: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def model_set(self) -> ModelSet:
        """The compared models, their reference and random-weights controls."""
        if self.models is None:
            return NATURAL_ROBUST
        return ModelSet.from_dict(self.models)

    @property
    def model_info(self) -> pd.DataFrame:
        """One row per (seed, trained model): ``seed, model, class, parameters, fingerprint``
        and anything the caller recorded (e.g. ``source``); empty for older results."""
        return pd.DataFrame((self.models or {}).get("info", []))

    # --- derived tables (computed once, from the records) ---------------------------------

    @cached_property
    def summary(self) -> pd.DataFrame:
        """Mean and 95% interval per (model, input, explainer, metric, reference): over
        per-seed means with several seeds, over images with one (:func:`rvi.analysis.stats.summarize`)."""
        return stats.summarize(self.records, self.config.bootstrap)

    @cached_property
    def _comparisons(self) -> tuple:
        """``(differences, control_differences)`` with Holm-adjusted ``p_holm`` over the family
        the verdicts check (:func:`rvi.analysis.verdicts.with_holm`)."""
        models = self.model_set
        differences = stats.model_differences(self.records, models, self.config.bootstrap)
        controls = verdicts.control_differences(self.records, self.config.methods[0],
                                                self.config.bootstrap, self.cascading, models)
        return verdicts.with_holm(differences, controls, self.config.methods[0], models)

    @property
    def differences(self) -> pd.DataFrame:
        """Paired (model - reference) differences per compared model, input kind and score
        (robust - natural for :func:`rvi.run_benchmark`), with ``p`` and ``p_holm``."""
        return self._comparisons[0]

    @property
    def control_differences(self) -> pd.DataFrame:
        """Paired (trained model - control) differences on natural inputs, with ``p``,
        ``p_holm`` and ``role`` (:func:`rvi.analysis.verdicts.control_role`)."""
        return self._comparisons[1]

    @cached_property
    def verdict_rows(self) -> list:
        """One dict per compared model and metric: ``model``, ``metric``, ``verdict``, ``line``
        (:func:`rvi.analysis.verdicts.verdict_rows`, rules :data:`rvi.analysis.verdicts.VERDICT_RULES`)."""
        # a dataset's target holds for its own models, not for models a user brings
        target = None if tables.is_compare(self) else \
            verdicts.robust_accuracy_target(self.config.dataset, self.config.attack)
        return verdicts.verdict_rows(self.differences, self.control_differences,
                                     self.config.methods[0], self.accuracy,
                                     self.config.attack.label, self.model_set, target)

    @property
    def verdicts(self) -> list:
        """One line per metric, computed from the numbers (:data:`rvi.analysis.verdicts.VERDICT_RULES`)."""
        return [row["line"] for row in self.verdict_rows]

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (model, input, explainer, metric, reference) with ``mean``,
        ``ci_low``, ``ci_high``, ``seeds``, ``n`` (images, all seeds), ``n_per_seed`` and
        ``interval`` (its kind)."""
        return self.summary.copy()

    def to_markdown(self) -> str:
        return tables.markdown(self)

    def to_csv(self) -> str:
        return self.summary.to_csv(index=False)

    def to_latex(self) -> str:
        return tables.latex(self)

    # --- serialization ----------------------------------------------------------------------

    def to_json(self) -> str:
        """Everything needed to rebuild the result (derived tables are recomputed on load)."""
        return json.dumps({
            "format": RESULT_FORMAT, "config": self.config.to_dict(), "meta": self.meta,
            "records": frame_to_json(self.records), "accuracy": frame_to_json(self.accuracy),
            "cascading": frame_to_json(self.cascading), "examples": self.examples,
            "models": self.models, "mechanism": frame_to_json(self.mechanism)}, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "BenchmarkResult":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") not in RESULT_FORMATS:
            raise ValueError(f"not an rvi benchmark result (format {RESULT_FORMAT})")
        missing = [key for key in ("config", "records", "accuracy", "cascading", "examples", "meta")
                   if key not in data]
        if missing:
            raise ValueError(f"missing key(s): {', '.join(missing)}")
        data = upgrade_result(data)
        return cls(config=BenchmarkConfig.from_dict(data["config"]),
                   records=frame_from_json(data["records"]),
                   accuracy=frame_from_json(data["accuracy"]),
                   cascading=frame_from_json(data["cascading"]),
                   examples=data["examples"], meta=data["meta"], models=_models(data),
                   mechanism=frame_from_json(data["mechanism"]) if data["mechanism"] is not None
                   else pd.DataFrame())

    def save(self, folder: Union[str, Path], *, overwrite: bool = False,
             figures: bool = True, records: bool = True) -> Path:
        """Write the result, tables, figures and the one-page ``report.html``
        (:mod:`rvi.report.html`; without figures when ``figures=False``) into ``folder``.
        ``records=False`` keeps the folder's record file as it is and re-renders the rest
        (``rvi report``).

        Every file is written into a staging folder beside ``folder``, which then takes its
        place, so a reader never sees files of two runs. With ``overwrite=True`` an existing rvi
        result is replaced as a whole, except that files rvi did not write (a user's
        ``notes.txt``) move into the new folder unchanged. A lock (``.NAME.lock`` beside the
        folder) makes a second writer of the same folder wait for the first.

        Returns:
            The folder.

        Raises:
            FileExistsError: ``folder`` holds a result and ``overwrite`` is False, or holds
                files that are not an rvi result.
            rvi.errors.ResultNotSavedError: (an ``OSError``) writing failed; the records were
                saved in the fallback folder the message and ``err.fallback`` name.
        """
        check_path("folder", folder)
        check_bool("overwrite", overwrite)
        check_bool("figures", figures)
        check_bool("records", records)
        folder = Path(folder)
        if not records and not (folder / RESULT_FILE).is_file():
            raise ValueError(f"records=False keeps the record file, but {folder} has no "
                             f"{RESULT_FILE}")
        with file_lock(lock_path_of(folder), wait=True, what=f"out folder {str(folder)!r}"):
            update = check_out_folder(folder, overwrite)
            try:
                self._replace_folder(folder, update, figures, records)
            except Exception as err:
                if not records:  # the records are on disk already
                    raise
                fallback = self._save_records_elsewhere(folder)
                where = f"its records are saved in {fallback} (rvi report renders them)"
                if isinstance(err, OSError):
                    raise ResultNotSavedError(f"could not write the result to {folder} "
                                              f"({err}); {where}", fallback) from err
                raise RuntimeError(f"rendering the result failed; {where}") from err
        return folder

    def _replace_folder(self, folder: Path, update: bool, figures: bool, records: bool) -> None:
        """Fill a staging folder beside ``folder`` (with the files of ``folder`` rvi does not
        own, and its record file when ``records`` is False), then put it in ``folder``'s place."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.staging-"))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a result folder is not
        try:
            if update:
                kept = [p for p in folder.iterdir() if p.name not in OWNED_FILES]
                for path in kept + ([] if records else [folder / RESULT_FILE]):
                    _link_or_copy(path, staging / path.name)
            self._write_files(staging, figures, records)
            if not folder.exists():
                staging.rename(folder)
            elif not update:  # an empty folder: nothing of anyone's to lose
                folder.rmdir()
                staging.rename(folder)
            else:
                old = folder.parent / f".{folder.name}.replaced-{os.getpid()}-{time.time_ns()}"
                folder.rename(old)
                try:
                    staging.rename(folder)
                except OSError:
                    old.rename(folder)  # the old result stays where it was
                    raise
                shutil.rmtree(old)
        finally:
            if staging.exists():
                shutil.rmtree(staging)

    def _save_records_elsewhere(self, folder: Path) -> Path:
        """Write the record file into a new folder ``NAME.unsaved-TIME`` beside ``folder``, or
        in the temporary directory when that fails; returns it."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for parent in (folder.parent, Path(tempfile.gettempdir())):
            fallback = parent / f"{folder.name}.unsaved-{stamp}-{os.getpid()}"
            try:
                fallback.mkdir(parents=True)
                self._write_records(fallback)
                return fallback
            except OSError:
                continue
        raise OSError(f"could not save the result's records anywhere (tried beside {folder} "
                      f"and in {tempfile.gettempdir()})")

    def _write_records(self, folder: Path) -> None:
        with atomic_write(folder / RESULT_FILE) as handle:
            # level 6: a third of level 9's time for 0.3% more bytes
            handle.write(gzip.compress(self.to_json().encode(), compresslevel=6, mtime=0))

    def _write_files(self, folder: Path, figures: bool, records: bool = True) -> None:
        """Write every owned file into ``folder`` (the record file only when ``records``)."""
        if records:
            self._write_records(folder)
        texts = {
            "tables.md": self.to_markdown(),
            "summary.csv": self.to_csv(),
            "tables.tex": self.to_latex(),
            "accuracy.csv": tables.accuracy_table(self).to_csv(index=False),
            "differences.csv": self.differences.to_csv(index=False),
            "controls.csv": self.control_differences.to_csv(index=False),
            "summary.json": json.dumps(self.summary_dict(), indent=2, allow_nan=False),
            "seed_means.csv": self.seed_means().to_csv(index=False),
        }
        for name, text in texts.items():
            with atomic_write(folder / name, "w") as handle:
                handle.write(text)
        paths = save_figures(self, folder) if figures else []
        images = {path.name: path.read_bytes() for path in paths}
        html.save(self, folder, images)  # last: it shows the figures

    def seed_means(self) -> pd.DataFrame:
        """Per seed and cell, the mean and count of every score over the images
        (:func:`rvi.scoring.records.seed_mean_table`)."""
        return seed_mean_table(self.records)

    def summary_dict(self) -> dict:
        """The small, readable summary saved as ``summary.json`` (floats, not strings)."""
        return {"config": self.config.to_dict(), "meta": self.meta,
                "accuracy": json_rows(self.accuracy), "cells": json_rows(self.summary),
                "models": self.models, "robust_minus_natural": json_rows(self.differences),
                "controls": json_rows(self.control_differences), "verdicts": self.verdicts,
                **({"mechanism": json_rows(self.mechanism)} if not self.mechanism.empty else {})}

    @classmethod
    def load(cls, folder: Union[str, Path]) -> "BenchmarkResult":
        """Read a result written by :meth:`save`."""
        check_path("folder", folder)
        path = saved_file(folder, RESULT_FILE, "rvi result")
        try:
            text = gzip.decompress(path.read_bytes()).decode()
        except (OSError, EOFError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a readable gzip file (truncated or corrupt?): "
                             f"{err}") from err
        try:
            return cls.from_json(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} holds invalid JSON: {err}") from err
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is not a complete rvi result: {_describe(err)}") from err


def combine_seeds(results: Sequence[BenchmarkResult]) -> BenchmarkResult:
    """One result from results of the same study run on disjoint seeds (e.g. seeds 0-2 on one
    day or machine, 3-4 on another): records, accuracy and randomization rows concatenated in
    the given order, the examples of the first, wall times summed. Every seed is computed on its
    own, so the combined result equals one run on all the seeds (tested), except the timings.

    Raises:
        ValueError: fewer than two results, configs that differ in more than ``seeds``,
            ``out_dir`` and ``cache_dir``, different compared models, or a seed in two results.
    """
    results = list(results)
    if len(results) < 2 or not all(isinstance(r, BenchmarkResult) for r in results):
        raise ValueError(f"results must be two or more BenchmarkResults, got {results!r:.200}")
    first = results[0]

    def study(result):
        return {k: v for k, v in result.config.to_dict().items()
                if k not in ("seeds", "out_dir", "cache_dir")}

    for number, result in enumerate(results[1:], 1):
        if study(result) != study(first):
            changed = sorted(k for k in study(first) if study(first)[k] != study(result)[k])
            raise ValueError(f"results[{number}] is another study: its config differs in "
                             f"{', '.join(changed)}")
        if result.model_set != first.model_set:
            raise ValueError(f"results[{number}] compares other models: {result.model_set}")
    seeds = [seed for r in results for seed in r.config.seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"results must have disjoint seeds, got {seeds}")
    timings: dict = {}
    for result in results:
        for stage, seconds in result.meta.get("timings_seconds", {}).items():
            timings[stage] = round(timings.get(stage, 0.0) + seconds, 2)
    meta = {**first.meta, "timings_seconds": timings,
            "training": {k: v for r in results for k, v in r.meta.get("training", {}).items()},
            "combined_from": [{"seeds": list(r.config.seeds), "environment":
                               r.meta.get("environment")} for r in results]}
    models = None if first.models is None else \
        {**first.models, "info": [row for r in results for row in r.models.get("info", [])]}
    return BenchmarkResult(
        config=replace(first.config, seeds=tuple(seeds)),
        records=pd.concat([r.records for r in results], ignore_index=True),
        accuracy=pd.concat([r.accuracy for r in results], ignore_index=True),
        cascading=pd.concat([r.cascading for r in results], ignore_index=True),
        examples=first.examples, meta=meta, models=models,
        mechanism=pd.concat([r.mechanism for r in results], ignore_index=True))


def check_out_folder(folder: Union[str, Path], overwrite: bool) -> bool:
    """Whether :meth:`BenchmarkResult.save` would update an existing result in ``folder``
    (False: it would create the folder or fill an empty one).

    Raises:
        FileExistsError: ``folder`` is a file, a non-empty folder that is not an rvi result, or
            a result while ``overwrite`` is False.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"out folder {str(folder)!r} is a file, not a folder")
    parent = next((p for p in folder.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise FileExistsError(f"out folder {str(folder)!r} cannot be made: {parent} is a file, "
                              "not a folder")
    if not (folder.is_dir() and any(folder.iterdir())):
        return False
    if not (folder / RESULT_FILE).is_file():
        raise FileExistsError(f"out folder {str(folder)!r} exists and is not an rvi "
                              "result; choose an empty or new folder")
    if not overwrite:
        raise FileExistsError(f"out folder {str(folder)!r} already holds a result; "
                              "pass overwrite=True (--overwrite) to replace it")
    return True


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a file; a folder's files each linked), or a
    copy where links are not possible."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)
        return
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)


def _models(data: dict) -> Optional[dict]:
    """The ``models`` entry of a stored result (None: natural vs robust), checked."""
    if data["models"] is None:
        return None
    models = data["models"]
    ModelSet.from_dict(models)  # KeyError/TypeError on a damaged entry
    return models


def _describe(err: Exception) -> str:
    return f"missing key {err}" if isinstance(err, KeyError) else str(err)
