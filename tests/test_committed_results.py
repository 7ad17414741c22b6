"""Every committed study and sweep folder with its records re-renders to the committed tables: the
tables in the README are what the code makes of the committed records.

What a reader sees (Markdown and LaTeX) must match byte for byte. The machine-readable files (CSV,
JSON) carry full float precision, whose last bits move with the CPU (AMD EPYC against Intel Xeon)
and with the numpy/pandas that pip resolves for each Python; there every text field must match
exactly and every number to :data:`TOLERANCE`.
"""

import csv
import io
import json
import math
from pathlib import Path

import pytest

import rvi
from rvi.report.result import RESULT_FILE
from rvi.report.sweep_result import SWEEP_FILE

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
#: Study folders: the current ones, and the superseded rvi 0.6 studies (still re-rendered).
STUDIES = sorted(str(path.parent.relative_to(RESULTS)) for pattern in ("*", "rvi-0.6/*")
                 for path in RESULTS.glob(f"{pattern}/{RESULT_FILE}"))
RENDERED = ("tables.md", "summary.csv", "tables.tex", "accuracy.csv", "differences.csv",
            "controls.csv", "summary.json", "seed_means.csv")
#: Tolerance on numbers in CSV and JSON files: |a - b| <= TOLERANCE * max(1, |a|, |b|). Measured
#: against the committed renders (made on an Intel Xeon, Python 3.11, numpy 2.4.6): on an AMD EPYC
#: the largest such difference was 5.6e-17 under Python 3.11 (numpy 2.4.6, pandas 3.1.1), 3.12
#: and 3.13 (numpy 2.5.5, pandas 3.1.1), and 1.2e-10 under Python 3.10 (numpy 2.2.6, pandas 2.3.3,
#: in t interval ends). Far below the 3 significant digits a table shows, and 80x below this bound.
TOLERANCE = 1e-8


def _same_number(got: float, want: float) -> bool:
    if math.isnan(got) or math.isnan(want):
        return math.isnan(got) and math.isnan(want)
    return abs(got - want) <= TOLERANCE * max(1.0, abs(got), abs(want))


def _as_number(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def _csv_differences(got: str, want: str) -> list:
    got_rows, want_rows = list(csv.reader(io.StringIO(got))), list(csv.reader(io.StringIO(want)))
    if [len(r) for r in got_rows] != [len(r) for r in want_rows]:
        return [f"shape {[len(r) for r in got_rows]} != {[len(r) for r in want_rows]}"]
    found = []
    for line, (got_row, want_row) in enumerate(zip(got_rows, want_rows), start=1):
        for a, b in zip(got_row, want_row):
            x, y = _as_number(a), _as_number(b)
            if a != b and (x is None or y is None or not _same_number(x, y)):
                found.append(f"line {line}: {a!r} != {b!r}")
    return found


def _json_differences(got, want, where: str = "$") -> list:
    if isinstance(got, dict) and isinstance(want, dict):
        if list(got) != list(want):
            return [f"{where}: keys {list(got)} != {list(want)}"]
        return [d for key in got for d in _json_differences(got[key], want[key], f"{where}.{key}")]
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return [f"{where}: length {len(got)} != {len(want)}"]
        return [d for i, (a, b) in enumerate(zip(got, want))
                for d in _json_differences(a, b, f"{where}[{i}]")]
    numbers = (int, float)
    if isinstance(got, numbers) and isinstance(want, numbers) and not isinstance(got, bool) \
            and not isinstance(want, bool):
        return [] if _same_number(float(got), float(want)) else [f"{where}: {got!r} != {want!r}"]
    return [] if got == want and type(got) is type(want) else [f"{where}: {got!r} != {want!r}"]


def differences(name: str, got: str, want: str) -> list:
    """What differs between a re-rendered file ``name`` (text ``got``) and the committed one:
    Markdown and LaTeX byte for byte, CSV and JSON with numbers to :data:`TOLERANCE`."""
    if name.endswith(".csv"):
        return _csv_differences(got, want)
    if name.endswith(".json"):
        return _json_differences(json.loads(got), json.loads(want))
    return [] if got == want else ["the text differs"]


def assert_re_renders(folder: Path, committed: Path, names: tuple) -> None:
    for name in names:
        found = differences(name, (folder / name).read_text(), (committed / name).read_text())
        assert not found, f"{name}: " + "; ".join(found[:5])


def test_there_are_committed_studies_with_records():
    assert STUDIES, f"no {RESULT_FILE} under {RESULTS}"


def test_every_committed_study_and_sweep_holds_its_records():
    """Records are git-ignored (a local run is not committed by accident) and committed with
    ``git add -f``; a folder whose tables were committed without them would not be re-rendered
    by the tests below, silently. rvi-0.4's folders are kept as rvi 0.4 wrote them."""
    missing = []
    for tables in RESULTS.rglob("tables.md"):
        folder, title = tables.parent, tables.read_text().partition("\n")[0]
        if folder.relative_to(RESULTS).parts[0] == "rvi-0.4":
            continue
        if title.startswith("# rvi benchmark") and not (folder / RESULT_FILE).exists():
            missing.append(f"{folder.name} (no {RESULT_FILE})")
        if title.startswith("# rvi sweep") and not any(folder.glob("jobs/*.json.gz")):
            missing.append(f"{folder.name} (no jobs/*.json.gz)")
    assert not missing, missing


@pytest.mark.parametrize("study", STUDIES)
def test_committed_study_re_renders_identically(study, tmp_path):
    result = rvi.BenchmarkResult.load(RESULTS / study)
    assert_re_renders(result.save(tmp_path / study, figures=False), RESULTS / study, RENDERED)


SWEEPS = sorted(path.parent.name for path in RESULTS.glob(f"*/{SWEEP_FILE}"))
SWEEP_RENDERED = ("tables.md", "tables.tex", "scores.csv", "accuracy.csv", "correlations.csv",
                  "models.csv", "summary.json")


@pytest.mark.parametrize("sweep", SWEEPS)
def test_committed_sweep_re_renders_identically(sweep, tmp_path):
    result = rvi.SweepResult.load(RESULTS / sweep)
    assert len(result.records) == len(result.config.eps_grid) * len(result.config.seeds)
    assert_re_renders(result.save(tmp_path / sweep, figures=False), RESULTS / sweep,
                      SWEEP_RENDERED)


# --- the comparison itself ---------------------------------------------------------------------

def _last_bit_moved(text: str) -> str:
    """``text`` with every float moved by one unit in its last place, as another CPU's rounding
    moves it (17 significant digits: ``0.4968111414522466`` -> ``0.49681114145224665``)."""
    def move(field: str) -> str:
        number = _as_number(field)
        if number is None or number == 0 or not math.isfinite(number) or "." not in field:
            return field
        return repr(math.nextafter(number, math.inf))
    rows = list(csv.reader(io.StringIO(text)))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[move(f) for f in row] for row in rows])
    return out.getvalue()


def test_a_float_rounding_difference_passes_and_a_real_one_fails():
    committed = (RESULTS / STUDIES[0] / "differences.csv").read_text()
    moved = _last_bit_moved(committed)
    assert moved != committed and not differences("differences.csv", moved, committed)
    changed = moved.replace(",0.", ",0.1", 1)  # one number changed in its first digits
    assert differences("differences.csv", changed, committed)
    assert differences("tables.md", "| 0.497 |\n", "| 0.496 |\n")
    assert differences("tables.md", committed, committed) == []


def test_json_compares_numbers_to_the_tolerance_and_everything_else_exactly():
    want = {"a": [0.4968111414522466, "text", None, 3, True], "b": {"c": float("nan")}}
    moved = json.loads(json.dumps(want).replace("0.4968111414522466", "0.49681114145224653"))
    assert differences("summary.json", json.dumps(moved), json.dumps(want)) == []
    for other in ({"a": [0.4969, "text", None, 3, True], "b": {"c": float("nan")}},
                  {"a": [0.4968111414522466, "Text", None, 3, True], "b": {"c": float("nan")}},
                  {"a": [0.4968111414522466, "text", None, 3, 1], "b": {"c": float("nan")}},
                  {"a": [0.4968111414522466, "text", None, 3, True], "b": {"c": 0.0}},
                  {"b": {"c": float("nan")}, "a": [0.4968111414522466, "text", None, 3, True]}):
        assert differences("summary.json", json.dumps(other), json.dumps(want)), other
