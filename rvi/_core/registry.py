"""The registries of attribution methods and metrics: ordered mappings name -> object.

A leaf module: it imports nothing from rvi. Each method or metric is one object, registered next
to its code: :mod:`rvi.attribution.saliency` fills :data:`METHOD_REGISTRY` with :class:`Method` objects,
:mod:`rvi.metrics.basic` and then :mod:`rvi.metrics.faithfulness` fill :data:`METRIC_REGISTRY` with
:class:`Metric` objects (``rvi/__init__`` imports both before any config is built). A registry
iterates in registration order. :func:`rvi.metrics.score`, config validation (:mod:`rvi.config`)
and shard alignment ask these objects instead of keeping lists of names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

#: Metric families: does the map look like the digit / is it sparse, or does it reflect the model.
FAMILIES = ("cleanliness", "faithfulness")


class Registry(Mapping):
    """An ordered, read-only mapping name -> object; objects are added once with :meth:`register`.

    Args:
        kind: what it holds (``"method"``, ``"metric"``), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict = {}

    def register(self, obj):
        """Add ``obj`` under ``obj.name`` and return it.

        Raises:
            ValueError: the name is not a non-empty string, or is registered already.
        """
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"a registered {self.kind} needs a non-empty string name, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def names(self) -> tuple:
        """The registered names, in registration order."""
        return tuple(self._items)

    def __getitem__(self, name: str):
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"


def _per_call(batch_size: int, expansion: int) -> int:
    """Images per model call when each image is ``expansion`` inputs (0: no model calls)."""
    return max(1, batch_size // expansion) if expansion else batch_size


@dataclass(frozen=True)
class Metric:
    """A metric of :func:`rvi.metrics.score`: its function and what a report needs to know.

    The first eleven fields keep the positional order of rvi's ``MetricInfo``.

    Attributes:
        name: the ``kind`` passed to :func:`rvi.metrics.score`.
        low, high: the range of the score for non-negative maps (``math.inf`` if unbounded).
        higher_is_better: whether a higher score means a cleaner / more faithful map.
        needs_model: the score needs the model (``model=``).
        uses_map: the score depends on the saliency method (``alignment`` scores the model's own
            gradient and ignores the map; ``sensitivity_max`` recomputes the maps of ``method``).
        description: one line for tables and help text.
        cannot_show: one line on what the score does not show.
        family: one of :data:`FAMILIES`.
        needs_targets: the score needs the class each map explains (``targets=``).
        needs_method: the score recomputes maps and needs the method's name (``method=``).
        function: what :func:`rvi.metrics.score` calls, ``function(maps, images, *, model,
            targets, method, seed, batch_size, offset)`` -> (N,) float; it checks its inputs.
        uses_sign: a signed map and its absolute value can score differently.
        signed_map: the benchmark scores it on the method's signed map (``explain(...,
            absolute=False)``) where the method has a sign, not on the absolute map.
        verdict: a verdict about the compared models is drawn on it. False for scores whose
            scale or baseline differs between models (raw deletion, insertion, infidelity):
            reported, described, never decided on.
        random_draws: the score draws random perturbations (seeded by ``seed`` and image index).
        expansion: model inputs per image in one model call (0: no model calls), so a call
            takes :meth:`images_per_call` images.
        passes_per_image: model passes (a forward, with its backward where a gradient is taken)
            one image costs; with ``needs_method``, maps recomputed per image, each costing the
            method's :attr:`Method.passes_per_image`.
        align_shards: a sharded run cuts its shards at this metric's model calls (the
            perturbations are drawn per call); deletion/insertion are left out on purpose, see
            :func:`rvi.metrics.basic.metric_images_per_call`.
        requires: ``(distribution, extra)`` of the optional package scoring needs (checked
            before a run's work, :func:`rvi.metrics.basic.check_installed`), None for none.
    """

    name: str
    low: float
    high: float
    higher_is_better: bool
    needs_model: bool
    uses_map: bool
    description: str
    cannot_show: str = ""
    family: str = "cleanliness"
    needs_targets: bool = False
    needs_method: bool = False
    function: Callable = field(kw_only=True)
    uses_sign: bool = field(default=False, kw_only=True)
    signed_map: bool = field(default=False, kw_only=True)
    verdict: bool = field(default=True, kw_only=True)
    random_draws: bool = field(default=False, kw_only=True)
    expansion: int = field(default=0, kw_only=True)
    passes_per_image: int = field(default=0, kw_only=True)
    align_shards: bool = field(default=False, kw_only=True)
    requires: Optional[tuple] = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {self.family!r}")
        if not callable(self.function):
            raise ValueError(f"metric {self.name!r} needs a callable function, got {self.function!r}")
        _check_counts(self.name, self.expansion, self.passes_per_image)

    def images_per_call(self, batch_size: int) -> int:
        """Images per model call with ``batch_size`` inputs a call: ``max(1, batch_size //
        expansion)``, or ``batch_size`` for a metric without model calls."""
        return _per_call(batch_size, self.expansion)


def no_settings(options) -> dict:
    """A method without settings of its own records none."""
    return {}


@dataclass(frozen=True)
class Method:
    """An attribution method of :func:`rvi.attribution.saliency.explain`.

    Attributes:
        name: the ``method`` passed to :func:`rvi.attribution.saliency.explain`.
        captum: the Captum call it makes, for documentation.
        attribute: one Captum call, ``attribute(model, inputs, target, options)`` -> (n, C, H, W)
            signed attributions (``options``: :class:`rvi.attribution.saliency.Options`).
        description: one line for tables and help text.
        signed: maps made with ``absolute=False`` can be negative.
        random_draws: the maps depend on random draws (seeded by ``explain``'s ``seed``).
        expansion: model passes per image in one Captum call with ``explain``'s defaults; the
            call takes :meth:`images_per_call` images.
        expansion_option: the :class:`rvi.attribution.saliency.Options` field that sets the expansion
            (``None``: always 1).
        settings: ``settings(options)`` -> the dict recorded in ``Attribution.settings``
            (default: none).
        preflight: ``preflight(model, example)`` raises ``ValueError`` for a model the method
            would explain wrongly (None: every model).
        skip_draws: ``skip_draws(offset, per_call, shape, options, device)`` advances the global
            RNG past the draws of ``offset`` earlier images (needed with ``random_draws``).
    """

    name: str
    captum: str
    attribute: Callable
    description: str
    signed: bool = True
    random_draws: bool = False
    expansion: int = 1
    expansion_option: Optional[str] = None
    settings: Callable = field(default=no_settings)
    preflight: Optional[Callable] = None
    skip_draws: Optional[Callable] = None

    def __post_init__(self) -> None:
        if not callable(self.attribute) or not callable(self.settings):
            raise ValueError(f"method {self.name!r} needs callable attribute and settings")
        if self.random_draws and self.skip_draws is None:
            raise ValueError(f"method {self.name!r} draws random numbers and needs skip_draws")
        if self.expansion_option is None and self.expansion != 1:
            raise ValueError(f"method {self.name!r}: an expansion other than 1 needs its "
                             f"expansion_option, got {self.expansion}")
        _check_counts(self.name, self.expansion, 1)

    @property
    def passes_per_image(self) -> int:
        """Model passes one image costs with ``explain``'s defaults: ``expansion`` plus the
        forward pass that predicts its class."""
        return self.expansion + 1

    def expansion_for(self, options) -> int:
        """The expansion with ``options`` (a :class:`rvi.attribution.saliency.Options`)."""
        return 1 if self.expansion_option is None else getattr(options, self.expansion_option)

    def images_per_call(self, batch_size: int, expansion: Optional[int] = None) -> int:
        """Images per Captum call: ``max(1, batch_size // expansion)`` (``expansion`` defaults
        to explain()'s)."""
        return _per_call(batch_size, self.expansion if expansion is None else expansion)


def _check_counts(name: str, expansion: int, passes: int) -> None:
    for what, value in (("expansion", expansion), ("passes_per_image", passes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name!r}: {what} must be an integer >= 0, got {value!r}")


#: Attribution methods by name (filled by :mod:`rvi.attribution.saliency`).
METHOD_REGISTRY = Registry("method")
#: Metrics by name (filled by :mod:`rvi.metrics.basic`, then :mod:`rvi.metrics.faithfulness`).
METRIC_REGISTRY = Registry("metric")
