"""One self-contained HTML page of a benchmark result, ``report.html``: the verdicts first, then
accuracy, scores with their intervals, differences, controls, layer randomization, the saliency
maps, the configuration and the machine.

The tables are :mod:`rvi.report.tables`'s (nothing is recomputed here) and the figures are the PNGs of
:mod:`rvi.report.figures`, embedded as base64 data URIs: the page loads no script and no external
resource, and every piece of text in it is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Mapping, Optional, Union

import pandas as pd

from .._core.checks import check_path
from .._core.formatting import NO_INTERVAL
from .._core.io import atomic_write
from ..analysis.verdicts import ALPHA, RANDOMIZATION_RULE
from ..scoring.records import NATURAL_ROBUST
from . import tables

HTML_FILE = "report.html"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The figures the page can show (file names as :func:`rvi.report.figures.save_figures` writes them)
#: and their captions.
FIGURES = {
    "accuracy.png": "Accuracy (%) per evaluation and model (mean over seeds).",
    "scores.png": "Per-image scores of the main method's maps in each cell (boxes: quartiles; "
                  "grey lines: the trivial explainers' means).",
    "cascading.png": "Cascading randomization: scores and similarity to the trained maps as the "
                     "layers are re-initialized from the output down (bands: 95% intervals).",
    "saliency_grid.png": "Test images, their adversarial versions and the main method's maps "
                         "(each map scaled to its own maximum).",
    "first_layer.png": "The first convolution's filters of each model (channel mean; first "
                       "seed): a threshold channel is titled with the pixel value it opens at.",
}
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 1.5em auto; max-width: 1180px;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { font-size: 1em; margin-bottom: .3em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } tr:nth-child(even) td { background: #fafafa; }
.wide { overflow-x: auto; } figure { margin: 1em 0; } figcaption { color: #555; font-size: 12px; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.verdicts li { margin-bottom: .4em; } .note { color: #555; font-size: 12px; }
@media (max-width: 640px) { body { margin: .5em auto; padding: 0 .5em; font-size: 13px; }
  table { font-size: 11px; } h1 { font-size: 1.25em; } }
@media print { body { max-width: none; margin: 0; font-size: 11px; }
  .wide { overflow: visible; } table { font-size: 9px; } img { max-height: 90vh; }
  h2 { break-after: avoid; } figure, tr { break-inside: avoid; } }
"""


def render(result, images: Optional[Mapping[str, bytes]] = None) -> str:
    """The page of ``result`` (a :class:`rvi.BenchmarkResult`) as one HTML string.

    ``images``: figure file name (a key of :data:`FIGURES`) -> PNG bytes; figures not given are
    left out. Raises ValueError for an unknown name or bytes that are not a PNG.
    """
    images = _checked_images(images)
    c = result.config
    lines = tables.header_lines(result)
    title = lines[0].lstrip("# ")
    items = [line[2:] for line in lines if line.startswith("- ")]
    body = [f"<h1>{_text(title)}</h1>", _list(items),
            _section("verdicts", f"Verdicts (natural input; each condition at p < {ALPHA:g}, "
                                 "Holm-corrected across the verdicts; details below)",
                     _table(tables.verdict_table(result)) or "<p>(no paired differences)</p>"),
            _section("accuracy", "Accuracy (%" + (", mean ± sd over seeds)" if len(c.seeds) > 1
                                                  else ")"),
                     _table(_accuracy(result)), _figure(images, "accuracy.png")),
            _section("scores", "Scores (mean [95% interval], seeds)", *_score_parts(result),
                     _figure(images, "scores.png"))]
    diffs = result.differences
    main = diffs[diffs["explainer"].isin([c.methods[0], "model"])]
    if not main.empty:
        models = result.model_set
        columns = (["model"] if len(models.compared) > 1 else []) + ["input", "metric", "reference"]
        what = "Robust - natural" if models == NATURAL_ROBUST else f"Each model - {models.reference}"
        body.append(_section("differences", f"{what}, paired over the same images (raw 95% "
                                            "intervals; p (Holm) on the rows a verdict uses)",
                             _table(tables.difference_table(main, columns))))
    controls = result.control_differences
    if not controls.empty:
        body.append(_section("controls", f"Trained model - control ({c.methods[0]}, natural "
                                         "input, paired)",
                             _table(tables.difference_table(controls,
                                                            ["model", "metric", "control"]))))
    if not result.cascading.empty:
        test = tables.randomization_table(result)
        rule = "" if test.empty else f"<p class='note'>{_text(RANDOMIZATION_RULE)}</p>"
        body.append(_section("randomization", "Layer randomization (Adebayo et al. 2018)",
                             _figure(images, "cascading.png"), rule, _table(test, ".3f")))
    mechanism = tables.mechanism_table(result)
    if not mechanism.empty:
        body.append(_section("mechanism", "First-layer mechanism (threshold channels of the "
                                          "first convolution and the map's mass through them)",
                             _table(mechanism), _figure(images, "first_layer.png")))
    body.append(_section("verdict-details", "Verdict details (each an intersection–union test "
                                            "of its conditions; intervals are the raw 95% ones)",
                         _list(result.verdicts or ["(no paired differences)"], "verdicts")))
    body += [_section("maps", "Saliency maps", _figure(images, "saliency_grid.png")
                      or "<p class='note'>(no figure saved)</p>"),
             _section("config", "Configuration", *_config_parts(result)),
             _section("machine", "Machine and timings", *_machine_parts(result.meta))]
    if re.search(rf"\d {NO_INTERVAL}", "\n".join(body)):  # the footnote, under the verdicts
        body.insert(3, f"<p class='note'>{_text(tables.NO_INTERVAL_NOTE)}</p>")
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>{_text(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(part for part in body if part) + "\n</body>\n</html>\n")


def save(result, folder: Union[str, Path], images: Optional[Mapping[str, bytes]] = None) -> Path:
    """Write :func:`render`'s page as ``folder/report.html`` in one atomic rename (no other file
    is touched); returns its path."""
    check_path("folder", folder)
    path = Path(folder) / HTML_FILE
    page = render(result, images)
    with atomic_write(path) as handle:
        handle.write(page.encode("utf-8"))  # as the page's <meta charset> says, whatever the locale
    return path


def _checked_images(images: Optional[Mapping[str, bytes]]) -> dict:
    if images is None:
        return {}
    if not isinstance(images, Mapping):
        raise ValueError(f"images must be a mapping of figure name to PNG bytes, got "
                         f"{type(images).__name__}")
    for name, data in images.items():
        if name not in FIGURES:
            raise ValueError(f"images has an unknown figure {name!r}; known: {', '.join(FIGURES)}")
        if not isinstance(data, (bytes, bytearray)) or bytes(data[:8]) != PNG_SIGNATURE:
            raise ValueError(f"images[{name!r}] must be PNG bytes, got {data!r:.60}")
    return dict(images)


def _text(value) -> str:
    return html.escape(str(value), quote=True)


def _list(items, css: str = "") -> str:
    rows = "".join(f"<li>{_text(item)}</li>" for item in items)
    return f"<ul class='{css}'>{rows}</ul>" if css else f"<ul>{rows}</ul>"


def _section(anchor: str, title: str, *parts: str) -> str:
    return (f"<section id='{anchor}'>\n<h2>{_text(title)}</h2>\n"
            + "\n".join(part for part in parts if part) + "\n</section>")


def _table(frame: pd.DataFrame, floats: str = ".2f", caption: str = "") -> str:
    """``frame`` as an escaped HTML table (floats with format ``floats``) under an optional
    heading; empty frames give ""."""
    if frame.empty:
        return ""
    table = frame.to_html(index=False, border=0, na_rep="", escape=True,
                          float_format=lambda v: format(v, floats))
    heading = f"<h3>{_text(caption)}</h3>\n" if caption else ""
    return f"{heading}<div class='wide'>{table}</div>"


def _figure(images: dict, name: str) -> str:
    if name not in images:
        return ""
    data = base64.b64encode(images[name]).decode("ascii")
    return (f"<figure><img alt='{_text(name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_text(FIGURES[name])}</figcaption></figure>")


def _accuracy(result) -> pd.DataFrame:
    """:func:`rvi.report.tables.accuracy_table` in %, as "mean ± sd" strings with several seeds."""
    mean = tables.accuracy_table(result)
    if result.accuracy["seed"].nunique() < 2:
        return mean
    std = tables.accuracy_table(result, "std")
    for column in mean.columns[1:]:
        mean[column] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(mean[column], std[column])]
    return mean


def _score_parts(result) -> list:
    method = result.config.methods[0]
    parts = [_table(tables.cleanliness_table(result, name),
                    caption=f"{name} maps, compared with the clean image")
             for name in result.config.methods]
    parts.append(_table(tables.cleanliness_table(result, method, "perturbed"),
                        caption=f"Adversarial inputs: {method} maps compared with the perturbed "
                                "image"))
    parts.append(_table(tables.target_table(result), ".3f",
                        caption=f"The class each {method} map explains"))
    return parts


def _config_parts(result) -> list:
    rows = _flatten(result.config.to_dict())
    config = pd.DataFrame({"field": list(rows), "value": list(rows.values())})
    training = pd.DataFrame.from_dict(result.meta.get("training", {}), orient="index")
    if not training.empty:
        training = training.rename_axis("model").reset_index()
    return [_table(config), _table(result.model_info, caption="Models"),
            _table(training, ".4g", caption="Training")]


def _machine_parts(meta: dict) -> list:
    parts = [_table(pd.DataFrame([meta.get("environment", {})]), caption="Environment")]
    combined = meta.get("combined_from")
    if combined:
        parts.append(_table(pd.DataFrame([{"seeds": ", ".join(map(str, part.get("seeds", []))),
                                           **(part.get("environment") or {})}
                                          for part in combined]),
                            caption="Combined from runs on"))
    timings = meta.get("timings_seconds", {})
    parts.append(_table(pd.DataFrame({"stage": list(timings), "seconds": list(timings.values())}),
                        ".1f", caption="Wall time"))
    return parts


def _flatten(mapping: dict, prefix: str = "") -> dict:
    """Nested dicts as ``{"a.b": value}``, values that are not strings as JSON text."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value if isinstance(value, str) else json.dumps(value)
    return flat
