"""Per-image records: their score keys, the model set they compare, and their JSON form.

A record frame has one row per (seed, model, input, image) with the identity columns ``seed,
model, input, image, label, target, prediction, correct, zero_map`` and score columns named
``"{explainer}/{metric}/{reference}"`` (parsed once, by :meth:`ScoreKey.from_column`):

- explainer: an attribution method (``guided_backprop`` ...), a trivial control explainer
  (``image``, ``edge``, ``noise``) or ``model`` for scores of the model itself (``alignment``);
- reference: the image the map is compared with, ``clean`` (x) or ``perturbed`` (x_adv).

Frames are stored as JSON with numeric columns as base64 of their little-endian bytes
(:func:`frame_to_json`), exact and compact.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd

from .._core.io import atomic_write

CELL = ["model", "input", "explainer", "metric", "reference"]
#: The explainer name under which model-only metrics (``uses_map=False``) are stored.
MODEL_EXPLAINER = "model"


class ScoreKey(NamedTuple):
    """The parts of a score column ``"explainer/metric/reference"``."""

    explainer: str
    metric: str
    reference: str

    @classmethod
    def from_column(cls, column) -> Optional["ScoreKey"]:
        """The key of a score column, or None for any other column (``seed``, ``label`` ...)."""
        if not isinstance(column, str) or column.count("/") != 2:
            return None
        return cls(*column.split("/"))

    @property
    def column(self) -> str:
        return f"{self.explainer}/{self.metric}/{self.reference}"


def score_keys(records: pd.DataFrame) -> dict:
    """``{column: ScoreKey}`` for the score columns of ``records``, in column order."""
    keys = {c: ScoreKey.from_column(c) for c in records.columns}
    return {c: k for c, k in keys.items() if k is not None}


class ModelSet(NamedTuple):
    """Which models of the records are compared, and how (data, not names in code).

    ``trained``: the compared models' names, in order; ``reference``: the one every other
    trained model is compared with (paired differences, verdicts); ``random_weights``: for each
    trained model, the model whose rows hold its random-weights control (None: not run). The
    trivial explainers are stored in the reference model's natural-input rows.
    """

    trained: tuple
    reference: str
    random_weights: dict

    @property
    def compared(self) -> tuple:
        """The trained models other than the reference, in order."""
        return tuple(m for m in self.trained if m != self.reference)

    @property
    def controls(self) -> tuple:
        """The random-weights control models, each once, in order."""
        return tuple(dict.fromkeys(c for c in self.random_weights.values() if c is not None))

    def to_dict(self) -> dict:
        return {"trained": list(self.trained), "reference": self.reference,
                "random_weights": dict(self.random_weights)}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSet":
        return cls(tuple(data["trained"]), data["reference"], dict(data["random_weights"]))


#: The model set of :func:`rvi.run_benchmark` (and of results saved before model sets existed):
#: natural and robust, compared robust - natural, sharing one random-weights architecture.
NATURAL_ROBUST = ModelSet(("natural", "robust"), "natural",
                          {"natural": "random_weights", "robust": "random_weights"})


def record_frame(seed: int, model: str, input_kind: str, labels, attribution, scores: dict,
                 offset: int = 0, target_probability=None) -> pd.DataFrame:
    """One row per image of a cell (images ``offset`` on): identity, the main attribution's
    target, the model's probability of it on the input (``target_probability``, NaN if not
    given), the prediction, its zero-map flag, and ``scores`` (``{ScoreKey: (N,) array}``).

    Shape: labels (N,) int64; ``attribution`` an :class:`rvi.attribution.saliency.Attribution` of N maps;
    target_probability (N,) float in [0, 1]."""
    probability = np.full(len(labels), np.nan, dtype=np.float32) if target_probability is None \
        else np.asarray(target_probability, dtype=np.float32)
    return pd.DataFrame({
        "seed": seed, "model": model, "input": input_kind,
        "image": np.arange(offset, offset + len(labels)), "label": labels.numpy(),
        "target": attribution.target.numpy(), "target_probability": probability,
        "prediction": attribution.predicted.numpy(),
        "correct": (attribution.predicted == labels).numpy(),
        "zero_map": attribution.zero_maps.cpu().numpy(),
        **{key.column: values for key, values in scores.items()}})


def seed_mean_table(records: pd.DataFrame) -> pd.DataFrame:
    """Per seed and cell, the mean and count of every score over the images: the numbers every
    seed-level interval is built from (a compact stand-in for the per-image records).
    Columns: ``seed, model, input, explainer, metric, reference, mean, n``."""
    keys = score_keys(records)
    cells = ["seed", "model", "input"]
    # float64 before the mean: pandas < 3 keeps float32 score columns float32 in a group mean
    grouped = records.astype(dict.fromkeys(keys, "float64")).groupby(cells, sort=False)[list(keys)]
    means = grouped.mean().reset_index().melt(id_vars=cells, var_name="column",
                                              value_name="mean")
    counts = grouped.count().reset_index().melt(id_vars=cells, var_name="column",
                                                value_name="n")
    table = means.merge(counts, on=cells + ["column"])
    table = table[table["n"] > 0]
    parts = pd.DataFrame([keys[c] for c in table["column"]], index=table.index,
                         columns=["explainer", "metric", "reference"])
    return pd.concat([table[cells], parts, table[["mean", "n"]]], axis=1).reset_index(drop=True)


# --- JSON -------------------------------------------------------------------------------------

def write_record(path: Path, record: dict) -> None:
    """Write a JSON-able record (e.g. a sweep job's) atomically as gzip JSON (no NaN)."""
    with atomic_write(path) as handle:
        handle.write(gzip.compress(json.dumps(record, allow_nan=False).encode()))


def read_record(path: Path) -> dict:
    """A record written by :func:`write_record`."""
    return json.loads(gzip.decompress(Path(path).read_bytes()))


def json_value(value):
    """A JSON-safe Python scalar: numpy types unwrapped, NaN -> None."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _column_to_json(column: pd.Series):
    """Numeric columns as base64 of their little-endian bytes (exact, compact, fast); others
    as a list of JSON values."""
    values = column.to_numpy()
    if values.dtype.kind in "fiub":
        return {"base64": base64.b64encode(values.astype(values.dtype.newbyteorder("<"))
                                           .tobytes()).decode("ascii")}
    return [json_value(v) for v in column.tolist()]


def _column_from_json(data, dtype: str):
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["base64"]), dtype=np.dtype(dtype)
                             .newbyteorder("<")).astype(dtype)
    return data


def frame_to_json(frame: pd.DataFrame) -> dict:
    """A frame as a JSON-able dict (columns, dtypes, data), read back by :func:`frame_from_json`."""
    return {"columns": list(frame.columns),
            "dtypes": [str(t) for t in frame.dtypes],
            "data": {c: _column_to_json(frame[c]) for c in frame.columns}}


def frame_from_json(data: dict) -> pd.DataFrame:
    """The frame :func:`frame_to_json` stored, with its dtypes."""
    frame = pd.DataFrame({c: _column_from_json(data["data"][c], t)
                          for c, t in zip(data["columns"], data["dtypes"])},
                         columns=data["columns"])
    for column, dtype in zip(data["columns"], data["dtypes"]):
        if dtype.startswith(("float", "int", "bool")):
            frame[column] = frame[column].astype(dtype)
    return frame


def json_rows(frame: pd.DataFrame) -> list:
    """A frame as a list of JSON-safe row dicts (NaN as None)."""
    return [{k: json_value(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
