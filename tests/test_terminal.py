"""The short terminal summary: the answer first, in 100 columns, numbers from the tables."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rvi
from rvi.report import terminal
from rvi.metrics.basic import METRICS

from test_benchmark import tiny_config


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return rvi.run_benchmark(tiny_config(tmp_path_factory.mktemp("terminal")))


def test_summary_fits_100_columns_and_leads_with_accuracy(result):
    text = terminal.summary(result, Path("some/folder"))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= terminal.WIDTH
    assert lines[0] == "rvi bench: lenet on synthetic"
    assert "1 seed; intervals: 95% bootstrap over images" in lines[1]
    assert lines[4].startswith("accuracy (%), eps 0.3") and "PGD-2" in lines[4]
    assert "nan" not in text and "(1 seed)" not in text
    assert text.rstrip().endswith("--full prints the tables here")
    assert "some/folder/tables.md" in text


def test_every_headline_number_is_the_summary_tables(result):
    text = terminal.summary(result)
    table = result.summary
    method = result.config.methods[0]
    for metric in result.config.metrics:
        explainer = method if METRICS[metric].uses_map else "model"
        row = table[(table["model"] == "robust") & (table["input"] == "natural")
                    & (table["explainer"] == explainer) & (table["metric"] == metric)
                    & (table["reference"] == "clean")].iloc[0]
        line = next(line for line in text.splitlines() if line.startswith(f"{metric} "))
        assert abs(row["ci_high"]) < 10  # three decimals (test_interval_formatting...)
        assert f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in line
    for verdict in result.verdict_rows:
        line = next(line for line in text.splitlines() if line.startswith(f"{verdict['metric']} "))
        assert line.endswith(verdict["verdict"].split(" (")[0])
    descriptive = [m for m in result.config.metrics if not METRICS[m].verdict]
    for metric in descriptive:
        assert next(line for line in text.splitlines()
                    if line.startswith(f"{metric} ")).endswith("descriptive")


def test_interval_formatting_and_the_dash_for_an_undefined_interval():
    assert terminal._interval(0.5, math.nan, math.nan) == f"0.500 {terminal.NO_INTERVAL}"
    assert terminal._interval(0.41149, 0.2809, 0.5416) == "0.411 [0.281, 0.542]"
    assert terminal._interval(39.62, 35.79, 43.46) == "39.6 [35.8, 43.5]"
    assert terminal._interval(8.44, -1.29, 18.17) == "8.4 [-1.3, 18.2]"


def test_attack_labels_are_shortened():
    assert terminal._attack("PGD-40 eps=0.3 alpha=0.01875 x5 restarts") == "PGD-40x5"
    assert terminal._attack("FGSM eps=0.3") == "FGSM"
    assert terminal._attack("PGD-7 eps=0.1 alpha=0.05 no random start") == \
        "PGD-7 (no random start)"


def test_failing_conditions_are_listed_for_unsupported_verdicts(result):
    text = " ".join(terminal.summary(result).split())
    failing = [(verdict["metric"], verdict["verdict"].partition(" (fails: ")[2])
               for verdict in result.verdict_rows if " (fails: " in verdict["verdict"]]
    assert failing  # a one-seed study of 1-epoch models supports no verdict
    for metric, reason in failing:
        assert f"{metric}: {reason.rstrip(')')}" in text


def test_summary_of_a_committed_five_seed_study_fits():
    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "rvi-0.6" / "mnist_study"
    text = terminal.summary(rvi.BenchmarkResult.load(folder), folder)
    assert max(len(line) for line in text.splitlines()) <= terminal.WIDTH
    assert "5 seeds; intervals: 95% Student-t" in text
    assert "robust                 98.30  92.30  89.82  87.32     84.76" in text


def test_a_redirected_bench_log_has_stage_lines_and_no_carriage_return(tmp_path):
    """Off a terminal (output redirected to a file) progress is one timestamped line per stage
    or training epoch, never tqdm's carriage-return updates."""
    config = tiny_config(tmp_path, methods=("saliency",), metrics=("cosine",),
                         controls=("image", "cascading"), eval_attacks=("fgsm",))
    (tmp_path / "bench.json").write_text(config.to_json())
    log = tmp_path / "log.txt"
    with open(log, "w") as handle:
        subprocess.run([sys.executable, "-m", "rvi", "bench", "--config",
                        str(tmp_path / "bench.json")], stdout=handle, stderr=subprocess.STDOUT,
                       check=True, timeout=600,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    text = log.read_text()
    assert "\r" not in text
    stages = re.findall(r"^\d\d:\d\d:\d\d (.+?): (\d+) (\w+) in [\d.]+ s", text, re.MULTILINE)
    names = [name for name, _, _ in stages]
    assert names[:4] == ["natural training, epoch 1/2", "natural training, epoch 2/2",
                         "adversarial training, epoch 1/2", "adversarial training, epoch 2/2"]
    assert {"attack (PGD-2 eps=0.3 alpha=0.1)", "accuracy under attack", "explain and score",
            "randomization tests"} <= set(names)
    assert ("explain and score", "4", "cells") in stages  # 2 models x 2 inputs
    assert ("natural training, epoch 1/2", "4", "batches") in stages  # 512 training images, batch 128


def test_stage_lines_report_a_long_stage_while_it_runs(monkeypatch, capsys):
    """Off a terminal (capsys is not one) a stage writes a line after an item once INTERIM_SECONDS
    have passed since the last, and one line when it ends."""
    from rvi._core import progress
    monkeypatch.setattr(progress, "INTERIM_SECONDS", 0.0)
    items = list(progress.progress_bar(["a", "b", "c"], desc="explain and score", unit="cell"))
    lines = capsys.readouterr().err.splitlines()
    assert items == ["a", "b", "c"] and len(lines) == 4
    assert [line.split(" ", 1)[1].split(",")[0] for line in lines[:3]] == [
        "explain and score: 1/3 cells", "explain and score: 2/3 cells",
        "explain and score: 3/3 cells"]
    assert lines[3].split(" ", 1)[1].startswith("explain and score: 3 cells in ")
    monkeypatch.setattr(progress, "INTERIM_SECONDS", 3600.0)
    list(progress.progress_bar(range(2), desc="x", unit="batch"))
    assert capsys.readouterr().err.count("\n") == 1  # a short stage: its final line only
