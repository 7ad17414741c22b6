"""The documentation site: every public name in the API reference, every page in the site, the
site built with warnings as errors, and the tutorial notebook executed as a user would run it
(the last two slow, with ``pip install "rvi[docs]"``)."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rvi
from rvi._core.checks import installed

DOCS = Path(__file__).resolve().parents[1] / "docs"
spec = importlib.util.spec_from_file_location("docs_build", DOCS / "build.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


def test_the_api_reference_names_every_public_name_once():
    documented = re.findall(r"^::: rvi\.(\w+)$", (DOCS / "api.md").read_text(), re.MULTILINE)
    assert sorted(set(rvi.__all__) - set(documented)) == []
    assert len(documented) == len(set(documented))
    assert set(documented) - set(rvi.__all__) == {"errors"}  # rvi.errors: the exception classes


def test_every_page_of_the_site_exists_and_every_guide_is_in_it():
    pages = [page for entry in build.PAGES for page in entry.values()]
    assert all((DOCS / page).is_file() for page in pages)
    assert {path.name for path in DOCS.glob("*.md")} <= set(pages)


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    if not all(map(installed, ("mkdocs", "mkdocstrings-python", "nbconvert"))):
        pytest.skip('the site needs pip install "rvi[docs]"')
    done = subprocess.run([sys.executable, str(DOCS / "build.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"index.html", "api.html", "tutorial.html"} <= {p.name for p in tmp_path.glob("*.html")}
    api = (tmp_path / "api.html").read_text()
    assert all(f'id="rvi.{name}"' in api for name in rvi.__all__)


@pytest.mark.slow
def test_the_tutorial_notebook_runs_as_committed(tmp_path):
    """The committed notebook's cells run top to bottom without an error, on mnist-5k."""
    if not (installed("nbclient") and installed("ipykernel")):
        pytest.skip('executing the notebook needs pip install "rvi[docs]"')
    import nbclient
    import nbformat

    notebook = nbformat.read(DOCS / "tutorial.ipynb", as_version=4)
    committed = json.loads((DOCS / "tutorial.ipynb").read_text())
    assert all(cell.get("outputs") for cell in committed["cells"] if cell["cell_type"] == "code")
    nbclient.NotebookClient(notebook, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = json.dumps([output.get("data", output.get("text")) for output in outputs])
    assert "foreground_mass" in text and "report.html" in text
    assert (tmp_path / "tutorial-out" / "tables.md").is_file()
