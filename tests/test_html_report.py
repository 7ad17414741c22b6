"""report.html: one self-contained page per saved result (verdicts first, figures embedded as
PNG data URIs, every text escaped, written atomically), and the per-metric figures' grid."""

import base64
import dataclasses
import html
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import pytest
from PIL import Image

import rvi
from rvi.report import figures, html as html_report, tables as report
from rvi.cli import main
from rvi.report.result import OWNED_FILES
from test_benchmark import tiny_config

FIGURE_FILES = ("saliency_grid.png", "scores.png", "accuracy.png", "cascading.png",
                "first_layer.png")
SECTIONS = ("verdicts", "accuracy", "scores", "differences", "controls", "randomization",
            "mechanism", "verdict-details", "maps", "config", "machine")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """test_benchmark's tiny study (11 metrics), saved with its figures: (result, folder)."""
    root = tmp_path_factory.mktemp("html")
    result = rvi.run_benchmark(tiny_config(root))
    return result, result.save(root / "result")


class Page(HTMLParser):
    """The tags, the attributes of every tag and the text of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.attributes, self.text = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


def test_the_page_is_self_contained_and_embeds_every_saved_figure(saved):
    result, folder = saved
    text = (folder / html_report.HTML_FILE).read_text()
    page = Page(text)
    assert {"script", "link", "iframe", "object"}.isdisjoint(page.tags)
    links = [v for _, name, v in page.attributes if name in ("src", "href", "srcset", "action")]
    assert not [v for v in links if v.strip().lower().startswith(("http:", "https:", "//"))]
    assert "url(" not in text  # no CSS fetch either
    sources = [v for tag, name, v in page.attributes if tag == "img" and name == "src"]
    assert len(sources) == len(FIGURE_FILES)
    embedded = []
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        data = base64.b64decode(source.partition(",")[2], validate=True)
        assert data.startswith(html_report.PNG_SIGNATURE)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        assert matplotlib.image.imread(io.BytesIO(data), format="png").ndim == 3
        embedded.append(data)
    assert sorted(embedded) == sorted((folder / name).read_bytes() for name in FIGURE_FILES)


def test_verdicts_come_first_and_every_metric_appears(saved):
    result, folder = saved
    text = (folder / html_report.HTML_FILE).read_text()
    assert f"<title>{html.escape(report.header_lines(result)[0][2:])}</title>" in text
    starts = [text.index(f"<section id='{name}'>") for name in SECTIONS]
    assert starts == sorted(starts)
    accuracy = text.index("<section id='accuracy'>")
    verdicts = text.index("<section id='verdicts'>")
    assert text.index("<table") > verdicts  # the verdict table is the page's first table
    assert result.verdicts and all(text.index(f"<td>{row['metric']}</td>", verdicts) < accuracy
                                   for row in result.verdict_rows)
    details = text.index("<section id='verdict-details'>")  # the whole sentences, further down
    assert all(text.index(html.escape(line)) > details for line in result.verdicts)
    assert text.index("<table", accuracy) < text.index("<section id='scores'>")  # its table
    scores = text[text.index("<section id='scores'>"):text.index("<section id='differences'>")]
    for metric in result.config.metrics:
        assert html.escape(report.metric_direction(metric)) in scores, metric
    assert len(result.config.metrics) > figures.MAX_COLUMNS  # the figure below is a grid


def test_text_from_the_result_is_escaped(saved, monkeypatch):
    result, _ = saved
    attack = "<img src=x onerror=alert(1)>"
    hostile = dataclasses.replace(result, meta={
        **result.meta, "environment": {**result.meta["environment"], "processor": attack},
        "training": {"<script>alert(2)</script>": {"epochs": 2}}})
    monkeypatch.setattr(rvi.BenchmarkResult, "verdicts",
                        property(lambda self: ["cosine: robust < natural & </ul><b>bold</b>"]))
    text = html_report.render(hostile)
    page = Page(text)
    assert "script" not in page.tags and "b" not in page.tags
    assert [tag for tag in page.tags if tag == "img"] == []
    assert attack not in text and html.escape(attack) in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert "cosine: robust &lt; natural &amp; &lt;/ul&gt;&lt;b&gt;bold&lt;/b&gt;" in text
    assert attack in "".join(page.text)  # shown as text


def test_save_replaces_only_its_own_file_atomically(saved, tmp_path, monkeypatch):
    result, _ = saved
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / html_report.HTML_FILE).write_text("old page")
    path = html_report.save(result, tmp_path)
    assert path == tmp_path / html_report.HTML_FILE
    page = path.read_text()
    assert page == html_report.render(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "report.html"]
    # a page that cannot be encoded: the write fails inside atomic_write
    monkeypatch.setattr(html_report, "render", lambda *args: "<p>half a page \udcff")
    with pytest.raises(UnicodeEncodeError):
        html_report.save(result, tmp_path)
    assert path.read_text() == page  # the old page stays whole, no temporary file is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "report.html"]


def test_bad_arguments_name_the_argument(saved):
    result, folder = saved
    png = (folder / "accuracy.png").read_bytes()
    with pytest.raises(ValueError, match="images has an unknown figure 'other.png'"):
        html_report.render(result, {"other.png": png})
    with pytest.raises(ValueError, match=r"images\['scores.png'\] must be PNG bytes"):
        html_report.render(result, {"scores.png": b"GIF89a"})
    with pytest.raises(ValueError, match="images must be a mapping"):
        html_report.render(result, [png])
    with pytest.raises(ValueError, match="folder must be a file or folder path, got 3"):
        html_report.save(result, 3)
    with pytest.raises(ValueError, match="count must be a positive int, got 0"):
        figures.panel_grid(0, 3, 3)


def test_result_save_owns_the_page_and_rvi_report_html_prints_its_path(saved, tmp_path, capsys):
    result, _ = saved
    assert html_report.HTML_FILE in OWNED_FILES
    folder = result.save(tmp_path / "r", figures=False)
    assert "<img" not in (folder / html_report.HTML_FILE).read_text()  # tables only
    assert main(["report", str(folder), "--html"]) == 0
    assert capsys.readouterr().out.strip() == str(folder / html_report.HTML_FILE)
    assert (folder / html_report.HTML_FILE).read_text().count("<img") == len(FIGURE_FILES)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    assert main(["report", str(sweep), "--html"]) == 2
    assert "--html: " in capsys.readouterr().err


def test_per_metric_figures_are_grids_of_at_most_max_columns(saved):
    import matplotlib.pyplot as plt

    result, _ = saved
    curves = result.cascading.query("mode == 'cascading' and kind in ['score', 'similarity']")
    for draw, panels in ((figures.score_distributions, len(result.config.metrics)),
                         (figures.cascading_chart, len(curves[["kind", "metric"]].drop_duplicates()))):
        figure = draw(result)
        shown = [ax for ax in figure.axes if ax.get_visible() and ax.get_title()]
        columns = {round(ax.get_position().x0, 3) for ax in shown}
        rows = {round(ax.get_position().y0, 3) for ax in shown}
        assert len(columns) == figures.MAX_COLUMNS and len(rows) > 1
        assert len(shown) == panels
        plt.close(figure)


def _browser():
    return next((path for path in map(shutil.which, ("chromium", "chromium-browser",
                                                     "google-chrome")) if path), None)


def test_no_nan_or_p_zero_where_a_person_reads(saved, tmp_path):
    """One seed and one re-initialization leave some intervals undefined, and some p values are
    below a float's reach: they read "—" (with the footnote) and "< 1e-300", never "nan" or
    "p 0"."""
    result, _ = saved
    one_draw = dataclasses.replace(
        result, config=dataclasses.replace(result.config, randomization_draws=1),
        cascading=result.cascading[result.cascading["draw"] == 0])
    folder = one_draw.save(tmp_path / "one-draw", figures=False)
    assert len(result.config.seeds) == 1
    assert (result.control_differences["p"] == 0).any()
    for name in ("tables.md", html_report.HTML_FILE):
        text = html.unescape((folder / name).read_text())
        assert not re.search(r"\bnan\b", text, re.IGNORECASE), name
        assert not re.search(r"\bp 0\b(?!\.)", text), name
        assert "< 1e-300" in text and re.search(r"\d —", text), name
        assert report.NO_INTERVAL_NOTE in text, name
    first = (folder / "tables.md").read_text().split("\n## ")[1]
    assert first.startswith("Verdicts") and "| metric " in first  # the verdict table, first


class _Page(HTMLParser):
    """The rendered DOM's tables (the section each sits in) and its text nodes."""

    def __init__(self):
        super().__init__()
        self.sections, self.tables, self.texts = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.sections.append(dict(attrs).get("id"))
        elif tag == "table":
            self.tables.append(self.sections[-1] if self.sections else None)

    def handle_data(self, data):
        if data.strip():
            self.texts.append(data.strip())


def _chromium(tmp_path, page, *flags, text=False):
    """Headless Chromium on ``page`` (a path) with ``flags``; skips the test without a browser."""
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium, chromium-browser or google-chrome binary on PATH")
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", *flags,
                           page.as_uri()], check=True, capture_output=True, text=text,
                          timeout=180)


@pytest.mark.slow
@pytest.mark.parametrize("width", [390, 1280])  # a phone, a laptop
def test_headless_chromium_renders_the_verdict_table_first(saved, tmp_path, width):
    page, size = saved[1] / html_report.HTML_FILE, f"--window-size={width},2400"
    rendered = _Page()
    rendered.feed(_chromium(tmp_path, page, size, "--dump-dom", text=True).stdout)
    assert rendered.tables[0] == "verdicts"  # the first table a reader meets
    assert not [t for t in rendered.texts if re.search(r"\bnan\b", t, re.IGNORECASE)]
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, page, size, f"--screenshot={shot}")
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape == (2400, width)
    # the page fits the window: no column of text runs past the right edge, so the right
    # margin is bare background while the left half holds text
    assert (pixels[:1200, :width // 2] < 128).mean() > 0.005
    assert (pixels[:1200, -4:] < 128).mean() < 0.002


@pytest.mark.slow
def test_the_page_prints(saved, tmp_path):
    """Printed (headless Chromium's print to PDF, print CSS), the page gives several pages."""
    pdf = tmp_path / "page.pdf"
    _chromium(tmp_path, saved[1] / html_report.HTML_FILE, f"--print-to-pdf={pdf}",
              "--no-pdf-header-footer")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 2


@pytest.mark.slow
def test_headless_chromium_shows_the_page(saved, tmp_path):
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, saved[1] / html_report.HTML_FILE, f"--screenshot={shot}",
              "--window-size=1200,3000")
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape == (3000, 1200)
    top = pixels[:600]  # title, header and verdicts: text, not bare background
    assert top.std() > 5 and (top < 128).mean() > 0.005
    assert pixels.std() > 5
