"""Attribution: Captum's methods behind one :func:`~rvi.attribution.saliency.explain`, and the
Guided Backprop pre-flight check.

This package owns the method registry: importing it imports every module that registers a method,
so :data:`METHOD_REGISTRY` is complete whatever imported it first. Code outside this package reads the
registered methods from here, never from :mod:`rvi._core.registry`.
"""

from .._core.registry import METHOD_REGISTRY
from . import preflight, saliency  # noqa: F401 (saliency registers every method)

__all__ = ["METHOD_REGISTRY"]
