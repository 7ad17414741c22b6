"""Build rvi's documentation site from docs/ and the docstrings (MkDocs + mkdocstrings), with
every warning an error:

    pip install -e ".[docs]"
    python docs/build.py [--out site]

The MkDocs configuration is written here, into a temporary file, so the repository's top level
holds no tool files; the site (static HTML, open ``site/index.html``) goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
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


def config(site: Path) -> dict:
    """The MkDocs configuration (JSON is valid YAML)."""
    return {
        "site_name": "rvi", "docs_dir": str(DOCS), "site_dir": str(site), "nav": PAGES,
        "theme": {"name": "readthedocs"}, "use_directory_urls": False,
        "exclude_docs": "build.py\n", "strict": True,
        "validation": {"links": {"not_found": "warn", "absolute_links": "warn",
                                 "unrecognized_links": "warn"}},
        "plugins": [
            "search",
            {"mkdocs-jupyter": {"execute": False, "include_source": True}},
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
        path = Path(tmp) / "mkdocs.yml"
        path.write_text(json.dumps(config(site), indent=2))
        done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--clean",
                               "--config-file", str(path)])
    if done.returncode == 0:
        pages = len(list(site.rglob("*.html")))
        print(f"{pages} HTML pages in {site} (open {site / 'index.html'})")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
