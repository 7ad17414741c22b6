"""Every committed study and sweep folder with its records re-renders to the committed tables,
byte for byte: the tables in the README are what the code makes of the committed records."""

from pathlib import Path

import pytest

import rvi
from rvi.result import RESULT_FILE
from rvi.sweep_result import SWEEP_FILE

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
STUDIES = sorted(path.parent.name for path in RESULTS.glob(f"*/{RESULT_FILE}"))
RENDERED = ("tables.md", "summary.csv", "tables.tex", "accuracy.csv", "differences.csv",
            "controls.csv", "summary.json", "seed_means.csv")


def test_there_are_committed_studies_with_records():
    assert STUDIES, f"no {RESULT_FILE} under {RESULTS}"


@pytest.mark.parametrize("study", STUDIES)
def test_committed_study_re_renders_identically(study, tmp_path):
    result = rvi.BenchmarkResult.load(RESULTS / study)
    folder = result.save(tmp_path / study, figures=False)
    for name in RENDERED:
        assert (folder / name).read_text() == (RESULTS / study / name).read_text(), name


SWEEPS = sorted(path.parent.name for path in RESULTS.glob(f"*/{SWEEP_FILE}"))
SWEEP_RENDERED = ("tables.md", "tables.tex", "scores.csv", "accuracy.csv", "correlations.csv",
                  "models.csv", "summary.json")


@pytest.mark.parametrize("sweep", SWEEPS)
def test_committed_sweep_re_renders_identically(sweep, tmp_path):
    result = rvi.SweepResult.load(RESULTS / sweep)
    assert len(result.records) == len(result.config.eps_grid) * len(result.config.seeds)
    folder = result.save(tmp_path / sweep, figures=False)
    for name in SWEEP_RENDERED:
        assert (folder / name).read_text() == (RESULTS / sweep / name).read_text(), name
