"""Build rvi's documentation site from docs/ and the docstrings (MkDocs + mkdocstrings), with
every warning an error:

    pip install -e ".[docs]"
    python docs/build.py [--out site]

The MkDocs configuration is written here, into a temporary folder beside a copy of docs/ in which
the tutorial notebook is converted to Markdown with its committed outputs (nbconvert), so the
repository's top level holds no tool files; the site (static HTML, open ``site/index.html``) goes
to ``--out``. (No MkDocs notebook plugin: mkdocs-jupyter needs mkdocs-material, whose every
release needs a newer ``requests`` than torchattacks allows.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
PAGES = [{"Home": "index.md"}, {"Tutorial": "tutorial.ipynb"}, {"Using the benchmark": "usage.md"},
         {"Metrics": "metrics.md"}, {"Comparing your own models": "compare.md"},
         {"The eps sweep": "sweep.md"}, {"Scaling out": "scaling.md"},
         {"Architecture": "architecture.md"}, {"API reference": "api.md"}]


def markdown_pages(docs: Path) -> None:
    """Copy docs/ into ``docs`` with each notebook converted to ``NAME.md`` (outputs as committed)
    and the pages' links to it following."""
    from nbconvert import MarkdownExporter

    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("build.py", "*.ipynb"))
    notebooks = sorted(DOCS.glob("*.ipynb"))
    for page in docs.glob("*.md"):
        text = page.read_text()
        for notebook in notebooks:
            text = text.replace(f"]({notebook.name}", f"]({notebook.stem}.md")
        page.write_text(text)
    for notebook in notebooks:
        body, resources = MarkdownExporter().from_filename(str(notebook))
        (docs / notebook.with_suffix(".md").name).write_text(body)
        for name, data in resources.get("outputs", {}).items():  # figures, if a cell draws one
            (docs / name).write_bytes(data)


def config(docs: Path, site: Path) -> dict:
    """The MkDocs configuration (JSON is valid YAML)."""
    nav = [{title: page.replace(".ipynb", ".md") for title, page in entry.items()}
           for entry in PAGES]
    return {
        "site_name": "rvi", "docs_dir": str(docs), "site_dir": str(site), "nav": nav,
        "theme": {"name": "readthedocs"}, "use_directory_urls": False,
        "strict": True,
        "validation": {"links": {"not_found": "warn", "absolute_links": "warn",
                                 "unrecognized_links": "warn"}},
        "plugins": [
            "search",
            {"mkdocstrings": {"handlers": {"python": {
                "paths": [str(REPO)],
                "options": {"docstring_style": "google", "show_source": False,
                            "show_root_heading": True, "show_root_full_path": True,
                            "members_order": "source", "filters": ["!^_"],
                            "heading_level": 3, "show_signature_annotations": True},
            }}}},
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "site"), help="folder for the built site")
    args = parser.parse_args()
    site = Path(args.out).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        docs, path = Path(tmp) / "docs", Path(tmp) / "mkdocs.yml"
        markdown_pages(docs)
        path.write_text(json.dumps(config(docs, site), indent=2))
        done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--clean",
                               "--config-file", str(path)])
    if done.returncode == 0:
        pages = len(list(site.rglob("*.html")))
        print(f"{pages} HTML pages in {site} (open {site / 'index.html'})")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
