"""Per-image scores of saliency maps: cleanliness (:mod:`~rvi.metrics.basic`), faithfulness
(:mod:`~rvi.metrics.faithfulness`, and against the same model's baselines in
:mod:`~rvi.metrics.relative`), Quantus' metrics (:mod:`~rvi.metrics.quantus`), map similarity and
the first layer's mechanism.

This package owns the metric registry: importing it imports every module that registers a metric,
in this order (the order of the tables' columns), so :data:`METRICS` is complete whatever imported
it first. Code outside this package reads the registered metrics from here, never from
:mod:`rvi._core.registry`.
"""

from . import basic, faithfulness, relative, quantus  # noqa: F401 (each registers its metrics)
from . import mechanism, similarity  # noqa: F401 (the package's other modules)
from .basic import FAMILIES, METRICS, cleanliness, score

__all__ = ["FAMILIES", "METRICS", "cleanliness", "score"]
