"""Readers of what older rvi versions saved, in one place: each function takes a stored dict as
an older version wrote it and returns it in the current format, so the code that reads configs,
results, sweep records and cache keys sees the current format only. Pure functions of plain
dicts (this module imports nothing from rvi).

- :func:`upgrade_train_config`: ``TrainConfig`` dicts of rvi 0.5 (no ``eps_warmup_epochs``) and
  before 0.9 (no ``threshold_start_epochs``); in ``TrainConfig.from_dict`` and
  ``BenchmarkConfig.from_dict``.
- :func:`key_recipe`: the cache keys of models trained before rvi 0.6, 0.8 and 0.9 added recipe
  fields; in ``rvi.models.cache.cache_key``.
- :func:`upgrade_result`: results in formats ``rvi-result-1`` and ``-2`` (no ``models``), from
  before rvi 0.11 (no ``randomization_draws``) and 0.12 (no ``mechanism``); in
  ``BenchmarkResult.from_json``.
- :func:`upgrade_sweep_record`: sweep job records from before rvi 0.12 (no ``mechanism``); in
  ``SweepResult``.

Names kept for code written against older versions (not stored formats) stay where they are
looked up: ``rvi.config.METHODS`` / ``METRIC_NAMES`` (rvi 0.4), ``rvi.metrics.basic.MetricInfo``
(rvi 0.4's name of ``Metric``) and the metric ``alignment`` (rvi 0.10's name of
``alignment_logit``, registered twice so saved records stay readable).
"""

from __future__ import annotations

#: Result formats :func:`upgrade_result` reads; the last one is current.
RESULT_FORMATS = ("rvi-result-1", "rvi-result-2", "rvi-result-3")


def upgrade_train_config(data, field_names) -> object:
    """A stored ``TrainConfig`` dict with the fields added since it was written filled in as that
    version trained, when it is a complete recipe dict of an older version (it holds every field
    in ``field_names`` but these): ``eps_warmup_epochs: 0.0`` for rvi 0.5 (no recipe warmed up)
    and ``threshold_start_epochs: 0`` before rvi 0.9 (none started); ``lr_warmup_share`` is
    left to its default (the one shape before rvi 0.8). Anything else (a partial dict, to be
    filled from defaults, or not a dict) is returned as it is."""
    if not isinstance(data, dict):
        return data
    added = {"eps_warmup_epochs": 0.0, "threshold_start_epochs": 0}
    if set(data) | {"lr_warmup_share"} | set(added) == set(field_names):
        return {**{name: value for name, value in added.items() if name not in data}, **data}
    return data


def key_recipe(recipe: dict, onecycle_warmup_share: float) -> dict:
    """A resolved recipe dict as cache keys hash it: the fields added in rvi 0.6
    (``eps_warmup_epochs``), 0.8 (``lr_warmup_share``) and 0.9 (``threshold_start_epochs``) are
    left out at the value every model cached before them trained with, so those models keep
    their keys; a whole-number warm-up is hashed as an int (5 and 5.0 train alike)."""
    recipe = dict(recipe)
    warmup = recipe["eps_warmup_epochs"]
    if not warmup:
        del recipe["eps_warmup_epochs"]
    elif float(warmup).is_integer():
        recipe["eps_warmup_epochs"] = int(warmup)
    if recipe["lr_warmup_share"] == onecycle_warmup_share:
        del recipe["lr_warmup_share"]
    if not recipe["threshold_start_epochs"]:
        del recipe["threshold_start_epochs"]
    return recipe


def upgrade_result(data: dict) -> dict:
    """A stored benchmark result in the current format: ``models`` None for formats 1 and 2
    (natural vs robust), ``randomization_draws: 1`` in its config before rvi 0.11 (one
    re-initialization per model), an empty ``mechanism`` before rvi 0.12."""
    config = {"randomization_draws": 1, **data["config"]}
    models = data.get("models") if data["format"] == RESULT_FORMATS[-1] else None
    return {**data, "format": RESULT_FORMATS[-1], "config": config, "models": models,
            "mechanism": data.get("mechanism")}


def upgrade_sweep_record(record: dict) -> dict:
    """A sweep job record in the current format: an empty ``mechanism`` before rvi 0.12."""
    return {**record, "mechanism": record.get("mechanism") or {}}
