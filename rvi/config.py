"""Frozen configuration dataclasses for every knob in rvi.

Each field carries its help text in ``metadata["help"]``; the command line builds exactly one flag
per field from it (``rvi/cli.py``), so defaults and help never drift apart. Values are checked in
``__post_init__`` and a bad value raises ``ValueError`` naming the field and the value.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ._core.catalog import (ATTACKS, CONTROLS, DATASET_ATTACK, DATASET_L2_EPS, DATASETS,  # noqa: F401
                            EPS_GRIDS, MODELS, NORMS, OPTIMIZERS, RANDOMIZATION_STEPS, REFERENCE_EPS,
                            SCHEDULES)  # re-exported: the names a config takes
from ._core.checks import check_bool, check_int, optional_int
from ._core.checks import check_choice as _check_choice
from ._core.checks import check_range as _check_range
from ._core.compat import upgrade_train_config
from ._core.registry import Registry
from .attribution import METHOD_REGISTRY
from .metrics import METRICS

PRECISIONS = ("float32", "bfloat16")
#: The metrics a benchmark and a sweep score by default.
#: Raw deletion and insertion are reported beside their model-relative versions (deletion_gain,
#: its blurred-removal twin deletion_gain_blur, lerf_morf), which the verdicts use; raw
#: infidelity (squared logit units) is on request only.
DEFAULT_METRICS = ("cosine", "foreground_mass", "inner", "gini", "alignment_logit",
                   "alignment_margin", "deletion", "insertion", "deletion_gain",
                   "deletion_gain_blur", "lerf_morf", "infidelity_unexplained")


def _registered(registry: Registry) -> tuple:
    """The names in ``registry``; a config is checked against the methods and metrics that
    :mod:`rvi.attribution` and :mod:`rvi.metrics` register on import."""
    names = registry.names()
    if not names:
        raise RuntimeError(f"no {registry.kind} is registered yet: a config was built while rvi "
                           f"was being imported")
    return names


def __getattr__(name: str):
    """``METHODS`` and ``METRIC_NAMES``: the registered names (rvi 0.4 re-exported them here)."""
    if name == "METHODS":
        return METHOD_REGISTRY.names()
    if name == "METRIC_NAMES":
        return METRICS.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_UNSET = object()


def _field_names(cls) -> set:
    return {spec.name for spec in dataclasses.fields(cls)}


def _help(text: str, legacy: Any = _UNSET, **kwargs: Any) -> Any:
    """A dataclass field whose help text travels in its metadata. A field added after configs
    were first saved names the ``legacy`` value every older config meant: :meth:`_Config.to_dict`
    leaves the field out at that value, so older dicts, cache keys and record keys stay valid."""
    metadata = {"help": text} if legacy is _UNSET else {"help": text, "legacy": legacy}
    return field(metadata=metadata, **kwargs)


#: The automatic recipe (``epochs``, ``eps_warmup_epochs`` and ``threshold_start_epochs`` left
#: None): (epochs, eps warm-up epochs, threshold-start epochs), keyed by whether it holds the
#: threshold start (:func:`rvi.models.train.auto_threshold_start`: MNIST, and a model whose first layer
#: takes it). Natural training takes the same epochs, without warm-up or start, so that a
#: natural-vs-robust comparison never also compares training budgets. With Adam, one-cycle to 3e-3
#: and batch 128 on full MNIST (``benchmarks/results/recipe_sweep.md``), 12 PGD-7 epochs with the
#: start met the seed study's accuracy table on each of 5 seeds (without it on none); 40 epochs
#: without it (rvi 0.7-0.9's default, kept for every other case) on each of 5. A natural LeNet
#: reaches 99% clean within 6.
AUTO_RECIPES = {True: (12, 3, 6), False: (40, 5, 0)}
#: Datasets whose automatic adversarial recipe holds the threshold start (where the model takes
#: it): MNIST's near-binary digits, where it was measured to replace 28 of 40 epochs. On
#: Fashion-MNIST (eps 0.1, threshold at 0.9) 12 epochs scored alike with it and without it.
THRESHOLD_START_DATASETS = ("mnist", "mnist-5k")
#: The one-cycle schedule's rise to its peak learning rate, as a share of the steps (torch's
#: default pct_start, the only shape before rvi 0.8).
ONECYCLE_WARMUP_SHARE = 0.3
#: Small datasets get more epochs (up to 4x; the warm-up and the start in proportion):
#: adversarial training needs enough optimizer steps.
AUTO_MIN_STEPS = 1000
#: Re-initializations per model in the layer randomization tests. One draw decided a verdict: over
#: 5 re-initializations of one mnist-5k LeNet pair the randomization test's excess ranged
#: 0.004-0.173 (robust) and 0.014-0.136 (natural) around its 0.05 margin.
RANDOMIZATION_DRAWS = 5
#: Centre weight of the threshold start's filter (``TrainConfig.threshold_start_epochs``); the
#: single-pixel threshold filters robust LeNets learn on their own hold 0.9-1.4.
THRESHOLD_START_WEIGHT = 1.2


class _Config:
    """Shared helpers: plain-dict round trip for JSON records and checkpoints."""

    def to_dict(self) -> dict:
        """Plain dict, nested configs as dicts; a field at its ``legacy`` value is left out."""
        out = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if "legacy" in spec.metadata and value == spec.metadata["legacy"]:
                continue
            out[spec.name] = value.to_dict() if isinstance(value, _Config) else copy.deepcopy(value)
        return out

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        kwargs = {}
        for name, value in data.items():
            nested = _NESTED.get((cls.__name__, name))
            if nested is not None and isinstance(value, dict):
                value = nested.from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


#: The largest L2 eps an AttackConfig takes (a 3x224x224 image's whole range is about 388).
MAX_L2_EPS = 1000.0


@dataclass(frozen=True)
class AttackConfig(_Config):
    """An attack built by torchattacks, in an L-inf or an L2 ball.

    ``eps`` and ``alpha`` are in pixel units of [0, 1] images: the largest change of one pixel
    (L-inf) or the Euclidean length of the whole change (L2).
    """

    name: str = _help("attack: fgsm (with norm L2 the fast gradient method, one PGDL2 step of "
                      "length eps), pgd or autoattack (torchattacks)", default="pgd")
    eps: float = _help("budget in [0, 1] pixel units: the largest pixel change (Linf) or the "
                       "change's Euclidean length (L2)", default=0.3)
    alpha: float = _help("PGD step size in [0, 1] pixel units", default=0.1)
    steps: int = _help("PGD iterations", default=7)
    random_start: bool = _help("PGD starts from a uniform random point in the eps-ball", default=True)
    restarts: int = _help("PGD random restarts (the worst case over restarts counts)", default=1)
    norm: str = _help("threat model: Linf (torchattacks PGD, FGSM) or L2 (PGDL2); AutoAttack "
                      "runs in either", default="Linf", legacy="Linf")

    def __post_init__(self) -> None:
        _check_choice("attack name", self.name, ATTACKS)
        _check_choice("norm", self.norm, NORMS)
        _check_range("eps", self.eps, 0.0, self.max_budget)
        _check_range("alpha", self.alpha, 0.0, self.max_budget)
        check_int("steps", self.steps, 1)
        check_int("restarts", self.restarts, 1)
        check_bool("random_start", self.random_start)

    @property
    def max_budget(self) -> float:
        """The largest ``eps`` (and step) of this norm: the pixel range 1 for L-inf,
        :data:`MAX_L2_EPS` for L2."""
        return 1.0 if self.norm == "Linf" else MAX_L2_EPS

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``PGD-7 eps=0.3 alpha=0.1``; two configs that make
        different attacks get different labels (FGSM and AutoAttack use only ``eps``)."""
        norm = "" if self.norm == "Linf" else f" {self.norm}"  # L-inf labels as before L2 came
        if self.name == "fgsm":
            return f"FGSM eps={_num(self.eps)}" if not norm else f"FGM{norm} eps={_num(self.eps)}"
        if self.name == "autoattack":
            return f"AutoAttack{norm} eps={_num(self.eps)}"
        restarts = f" x{self.restarts} restarts" if self.restarts > 1 else ""
        start = "" if self.random_start else " no random start"
        return (f"PGD-{self.steps}{norm} eps={_num(self.eps)} alpha={_num(self.alpha)}{restarts}"
                f"{start}")


def dataset_attack(dataset: str, norm: str = "Linf") -> AttackConfig:
    """PGD-7 with a random start at the budget ``dataset`` is usually attacked at in ``norm``:
    L-inf (eps, alpha) from :data:`DATASET_ATTACK` (MNIST 0.3 / 0.1, Fashion-MNIST 0.1 / 0.033,
    CIFAR-10 8/255 / 2/255); L2 eps from :data:`DATASET_L2_EPS` (MNIST 2.0, CIFAR-10 0.5) with
    step eps / 4 (7 steps go 1.75 eps, as 0.1 x 7 steps go 2.3 eps at L-inf 0.3).

    Raises:
        ValueError: an unknown dataset or norm, or L2 on a dataset without a stated L2 budget.
    """
    _check_choice("dataset", dataset, DATASETS)
    _check_choice("norm", norm, NORMS)
    if norm == "Linf":
        eps, alpha = DATASET_ATTACK[dataset]
        return AttackConfig(eps=eps, alpha=alpha)
    if dataset not in DATASET_L2_EPS:
        raise ValueError(f"dataset {dataset!r} has no stated L2 budget (known: "
                         f"{', '.join(DATASET_L2_EPS)}); give the attack's eps and alpha")
    eps = DATASET_L2_EPS[dataset]
    return AttackConfig(eps=eps, alpha=eps / 4, norm="L2")


def dataset_attack_help(name: str) -> str:
    """The per-dataset default of AttackConfig field ``name`` (eps or alpha), for help texts."""
    index = ("eps", "alpha").index(name)

    def pixels(value: float) -> str:
        steps = value * 255
        return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-6 else f"{value:g}"
    return "per dataset: " + ", ".join(f"{dataset} {pixels(pair[index])}"
                                       for dataset, pair in DATASET_ATTACK.items())


def _num(value: float) -> str:
    """``0.3`` as ``0.3``; a value that ``:g`` would round is written in full."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


@dataclass(frozen=True)
class TrainConfig(_Config):
    """A training recipe: natural, or adversarial on torchattacks PGD examples."""

    adversarial: bool = _help("train on PGD examples (attack settings below) instead of clean images",
                              default=False)
    attack: AttackConfig = _help("attack used to make training examples when adversarial",
                                 default_factory=AttackConfig)
    epochs: Optional[int] = _help(
        f"passes over the training set (default: {AUTO_RECIPES[True][0]} on MNIST for a model "
        f"whose first layer takes the threshold start, else {AUTO_RECIPES[False][0]}, natural and "
        f"adversarial alike, and at least {AUTO_MIN_STEPS} optimizer steps on small datasets)",
        default=None)
    batch_size: int = _help("images per optimizer step", default=128)
    optimizer: str = _help("adam or sgd", default="adam")
    lr: float = _help("(peak) learning rate", default=3e-3)
    schedule: str = _help("learning-rate schedule: constant, onecycle or cosine", default="onecycle")
    momentum: float = _help("SGD momentum (ignored by adam)", default=0.9)
    weight_decay: float = _help("L2 weight decay", default=0.0)
    seed: int = _help("seed for initialization, shuffling and PGD random starts", default=0)
    precision: str = _help("arithmetic of the attack and forward pass during training: float32, or "
                           "bfloat16 autocast (weights and optimizer stay float32)", default="float32")
    eps_warmup_epochs: Optional[float] = _help(
        "epochs over which the training attack's eps and step rise linearly, batch by batch, from "
        "0 to their values (0: full strength from the first batch; default: the automatic recipe's "
        f"{AUTO_RECIPES[True][1]} of {AUTO_RECIPES[True][0]} or {AUTO_RECIPES[False][1]} of "
        f"{AUTO_RECIPES[False][0]} epochs when the epochs are automatic too, adversarial only, else 0)",
        default=None)
    lr_warmup_share: float = _help(
        "onecycle only: share of the optimizer steps over which the learning rate rises to its "
        "peak before annealing (torch's pct_start)", default=ONECYCLE_WARMUP_SHARE)
    threshold_start_epochs: Optional[int] = _help(
        "adversarial only, for a first convolution taking one channel in [0, 1]: epochs for which "
        "its filter 0 is held at a single-pixel threshold opening at 1 - eps (centre weight "
        f"{THRESHOLD_START_WEIGHT}, zero elsewhere), rewritten after every optimizer step, then "
        "released to train like the others (0: no threshold start; default: half the epochs, "
        f"{AUTO_RECIPES[True][2]} of {AUTO_RECIPES[True][0]}, when they are automatic too, on MNIST "
        "for a model whose first layer takes it, else 0)", default=None)

    def __post_init__(self) -> None:
        check_bool("adversarial", self.adversarial)
        if not isinstance(self.attack, AttackConfig):
            raise ValueError(f"attack must be an AttackConfig, got {self.attack!r}")
        if self.adversarial and self.attack.name == "autoattack":
            raise ValueError("attack name for adversarial training must be fgsm or pgd, got 'autoattack'")
        optional_int(self.epochs, "epochs")
        check_int("batch_size", self.batch_size, 1)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_range("lr", self.lr, 0.0, 10.0)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_range("momentum", self.momentum, 0.0, 1.0, low_open=False)
        _check_range("weight_decay", self.weight_decay, 0.0, 1.0, low_open=False)
        check_int("seed", self.seed, 0)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_range("lr_warmup_share", self.lr_warmup_share, 0.0, 1.0)
        if self.lr_warmup_share == 1.0:  # torch's OneCycleLR divides by the annealing steps
            raise ValueError(f"lr_warmup_share must be below 1 (some steps must anneal), got "
                             f"{self.lr_warmup_share!r}")
        if self.schedule != "onecycle" and self.lr_warmup_share != ONECYCLE_WARMUP_SHARE:
            raise ValueError(f"lr_warmup_share needs schedule='onecycle', got {self.lr_warmup_share} "
                             f"with schedule={self.schedule!r}")
        optional_int(self.threshold_start_epochs, "threshold_start_epochs", 0)
        if self.threshold_start_epochs and not self.adversarial:
            raise ValueError(f"threshold_start_epochs needs adversarial=True, got "
                             f"{self.threshold_start_epochs}")
        if None not in (self.epochs, self.threshold_start_epochs) and \
                self.threshold_start_epochs > self.epochs:
            raise ValueError(f"threshold_start_epochs must be at most epochs ({self.epochs}), got "
                             f"{self.threshold_start_epochs}")
        if self.eps_warmup_epochs is None:
            return
        _check_range("eps_warmup_epochs", self.eps_warmup_epochs, 0.0, 10_000.0, low_open=False)
        if self.eps_warmup_epochs and not self.adversarial:
            raise ValueError(f"eps_warmup_epochs needs adversarial=True, got {self.eps_warmup_epochs}")
        if self.epochs is not None and self.eps_warmup_epochs > self.epochs:
            raise ValueError(f"eps_warmup_epochs must be at most epochs ({self.epochs}), got "
                             f"{self.eps_warmup_epochs}")

    @classmethod
    def from_dict(cls, data: dict):
        """Like every config's; a dict written before rvi 0.9 is read as that version trained
        (:func:`rvi._core.compat.upgrade_train_config`)."""
        return super().from_dict(upgrade_train_config(data, _field_names(cls)))

    def epochs_for(self, n_images: int, *, with_threshold_start: bool) -> int:
        """Epochs this recipe trains on ``n_images`` training images: ``epochs`` when given, else
        the automatic recipe's (:data:`AUTO_RECIPES`: 12 ``with_threshold_start``, else 40),
        raised so that training takes at least
        :data:`AUTO_MIN_STEPS` optimizer steps, up to four times that (the 4,000 mnist-5k
        training images get 32 epochs with the start, 40 without; 100 images 48 or 160)."""
        check_int("n_images", n_images, 1)
        check_bool("with_threshold_start", with_threshold_start)
        if self.epochs is not None:
            return self.epochs
        steps_per_epoch = -(-n_images // self.batch_size)
        base = AUTO_RECIPES[self._starts(with_threshold_start)][0]
        return max(base, min(4 * base, -(-AUTO_MIN_STEPS // steps_per_epoch)))

    def _auto_share(self, n_images: int, with_threshold_start: bool, index: int) -> float:
        """The automatic recipe's warm-up (``index`` 1) or start (2) in epochs: its share of the
        automatic epochs, for an adversarial recipe with automatic epochs, else 0."""
        if not self.adversarial or self.epochs is not None:
            return 0.0
        recipe = AUTO_RECIPES[self._starts(with_threshold_start)]
        epochs = self.epochs_for(n_images, with_threshold_start=with_threshold_start)
        return epochs * recipe[index] / recipe[0]

    def _starts(self, with_threshold_start: bool) -> bool:
        """Whether the automatic recipe is the threshold-start one: the model takes the start
        (``with_threshold_start``) and the attack is L-inf. A single-pixel threshold is the
        L-inf defence on near-binary digits; L2 recipes (natural partners included, which hold
        the same attack) train the standard recipe's epochs."""
        return with_threshold_start and self.attack.norm == "Linf"

    def warmup_for(self, n_images: int, *, with_threshold_start: bool) -> float:
        """Epochs of eps warm-up this recipe trains on ``n_images`` images: ``eps_warmup_epochs``
        when given, else the automatic recipe's share of :meth:`epochs_for` for an adversarial
        recipe with automatic epochs (3 of 12 or 5 of 40), else 0."""
        if self.eps_warmup_epochs is not None:
            return self.eps_warmup_epochs
        return self._auto_share(n_images, with_threshold_start, 1)

    def threshold_start_for(self, n_images: int, *, with_threshold_start: bool) -> int:
        """Epochs of threshold start this recipe trains on ``n_images`` images:
        ``threshold_start_epochs`` when given, else half of :meth:`epochs_for` for an adversarial
        recipe with automatic epochs ``with_threshold_start`` and an eps below 1, else 0."""
        if self.threshold_start_epochs is not None:
            return self.threshold_start_epochs
        if self.attack.eps >= 1 or self.attack.norm != "Linf":  # no automatic start
            return 0
        return int(self._auto_share(n_images, with_threshold_start, 2))

    def resolved(self, n_images: int, *, with_threshold_start: bool) -> "TrainConfig":
        """This recipe with the epochs, eps warm-up and threshold start it trains on ``n_images``
        images written out; ``with_threshold_start``: whether the automatic recipe holds the
        threshold start (:func:`rvi.models.train.auto_threshold_start`)."""
        kwargs = {"n_images": n_images, "with_threshold_start": with_threshold_start}
        return dataclasses.replace(self, epochs=self.epochs_for(**kwargs),
                                   eps_warmup_epochs=self.warmup_for(**kwargs),
                                   threshold_start_epochs=self.threshold_start_for(**kwargs))

    @property
    def recipe_label(self) -> str:
        """The recipe without its seed, e.g. ``natural, 20 epochs, adam lr 0.003 onecycle, batch 128``."""
        kind = f"adversarial ({self.attack.label})" if self.adversarial else "natural"
        epochs = "auto epochs" if self.epochs is None else f"{self.epochs} epochs"
        precision = "" if self.precision == "float32" else f", {self.precision}"
        warmup = f", eps warm-up {self.eps_warmup_epochs:g} epochs" if self.eps_warmup_epochs else ""
        shape = ("" if self.lr_warmup_share == ONECYCLE_WARMUP_SHARE
                 else f" (peak at {self.lr_warmup_share:g} of the steps)")
        start = (f", threshold start {self.threshold_start_epochs} epochs"
                 if self.threshold_start_epochs else "")
        return (f"{kind}, {epochs}{warmup}{start}, {self.optimizer} lr {self.lr:g} {self.schedule}{shape}, "
                f"batch {self.batch_size}{precision}")

    @property
    def label(self) -> str:
        """:attr:`recipe_label` and the seed."""
        return f"{self.recipe_label}, seed {self.seed}"


def _check_tuple(name: str, values, *, each: Callable, empty_ok: bool = False) -> None:
    """``values`` must be a tuple without repeats (non-empty unless ``empty_ok``); ``each`` checks
    every entry."""
    if not isinstance(values, tuple) or (not values and not empty_ok) or \
            len(set(values)) != len(values):
        kind = "a tuple" if empty_ok else "a non-empty tuple"
        raise ValueError(f"{name} must be {kind} without repeats, got {values!r}")
    for value in values:
        each(value)


EVAL_ATTACK_HELP = ("attacks for the accuracy table: fgsm, pgd (the --attack-* settings), "
                    "pgd-STEPSxRESTARTS (e.g. pgd-40x5, step 2.5*eps/steps) or autoattack; "
                    "NAME@Linf or NAME@L2 attacks in that norm at the dataset's default budget "
                    "when it is not the attack's norm (e.g. autoattack@L2)")


@dataclass(frozen=True)
class CellOptions(_Config):
    """The per-cell options: what every model of a study or a sweep is measured and scored with.

    Declared once, here: :class:`BenchmarkConfig` and :class:`SweepConfig` take each of these
    fields through :func:`cell_field` (its help, default and check), a sweep's jobs
    (:class:`rvi.studies.sweep_job.SweepJob`) are CellOptions, and
    :meth:`rvi.scoring.pipeline.CellSpec.from_options` turns them into the pipeline's work.
    """

    eval_attacks: tuple[str, ...] = _help(
        f"{EVAL_ATTACK_HELP}; in rvi sweep, pgd is PGD-7 (step eps/3) at each evaluation eps, "
        "and NAME@NORM is not taken", default=("fgsm", "pgd"))
    eval_n: Optional[int] = _help("run the costly evaluation attacks (autoattack, pgd-SxR) on the "
                                  "first N test images only (fgsm and pgd run on all)", default=1000)
    methods: tuple[str, ...] = _help(
        "attribution methods (Captum): guided_backprop, saliency, integrated_gradients, "
        "smoothgrad; the first is the main one", default=("guided_backprop", "saliency"))
    metrics: tuple[str, ...] = _help(
        "map metrics (docs/metrics.md): cleanliness inner, cosine, foreground_mass, gini; model "
        "gradient alignment_logit, alignment_margin; faithfulness deletion, insertion, "
        "deletion_gain, deletion_gain_blur, lerf_morf, infidelity_unexplained, infidelity, "
        "sensitivity_max; any of Quantus' as quantus:NAME (docs/metrics.md)",
        default=DEFAULT_METRICS)
    faithfulness_n: Optional[int] = _help(
        "score the faithfulness metrics on the first N test images only (they query the model "
        "many times per image)", default=1000)
    target: str = _help("class each map explains: true or predicted", default="true")
    n_test: Optional[int] = _help("use the first N test images (default: all)", default=None)
    batch_size: int = _help("images per attack/attribution batch", default=250)

    def __post_init__(self) -> None:
        check_cell_options(self)


#: The names of the per-cell options, in :class:`CellOptions`' order.
CELL_OPTIONS = tuple(spec.name for spec in dataclasses.fields(CellOptions))


def cell_field(name: str, default: Any = _UNSET) -> Any:
    """A study config's field for the per-cell option ``name``: :class:`CellOptions`' help and
    default, or ``default`` where the study's default differs for a reason it states."""
    spec = CellOptions.__dataclass_fields__[name]
    return field(metadata=spec.metadata, default=spec.default if default is _UNSET else default)


def check_cell_options(options, attack: Optional[AttackConfig] = None,
                       dataset: Optional[str] = None) -> None:
    """Check the per-cell options of ``options`` (a :class:`CellOptions` or a config holding
    them): names against the registries, ``eval_attacks`` entries parsed with ``attack`` (default
    :class:`AttackConfig`) and ``dataset`` (:func:`parse_eval_attack`), counts >= 1."""
    for name, registry in (("methods", METHOD_REGISTRY), ("metrics", METRICS)):
        _check_tuple(name, getattr(options, name),
                     each=lambda value, name=name, choices=_registered(registry):
                     _check_choice(f"{name} entry", value, choices))
    _check_choice("target", options.target, ("true", "predicted"))
    base = AttackConfig() if attack is None else attack
    _check_tuple("eval_attacks", options.eval_attacks, empty_ok=True,
                 each=lambda spec: parse_eval_attack(spec, base, dataset))
    for name in ("n_test", "eval_n", "faithfulness_n"):
        optional_int(getattr(options, name), name)
    check_int("batch_size", options.batch_size, 1)


def _check_strings(config, *, optional: tuple, required: tuple) -> None:
    """Each field of ``required`` is a non-empty string, each of ``optional`` one or None."""
    for name in optional + required:
        value = getattr(config, name)
        if not (isinstance(value, str) and value) and not (name in optional and value is None):
            expected = "a non-empty string" + (" or None" if name in optional else "")
            raise ValueError(f"{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class BenchmarkConfig(_Config):
    """The 2x2 study: {naturally, adversarially trained model} x {natural, adversarial input}."""

    dataset: str = _help("dataset name (mnist-5k is embedded and works offline)", default="mnist-5k")
    data_dir: Optional[str] = _help("folder with the dataset's IDX files (default: $RVI_DATA_DIR "
                                    "or ~/.cache/rvi/data)", default=None)
    download: bool = _help("let torchvision download a missing dataset", default=True)
    model: str = _help("architecture: lenet, madry-cnn or resnet18", default="lenet")
    natural: Optional[TrainConfig] = _help("recipe of the naturally trained model", default=None)
    robust: Optional[TrainConfig] = _help(
        "recipe of the adversarially trained model (default: trained on the dataset's attack, "
        "dataset_attack())", default=None)
    attack: Optional[AttackConfig] = _help(
        "attack that makes the adversarial inputs (default: the dataset's, dataset_attack(): PGD-7 "
        "with random start, MNIST eps 0.3 alpha 0.1, Fashion-MNIST 0.1 / 0.033, CIFAR-10 8/255 / "
        "2/255; independent of the robust recipe's training attack)", default=None)
    norm: str = _help(
        "threat model of the dataset's default attacks (the adversarial inputs and both recipes' "
        "attack): Linf, or L2 (PGDL2 at the dataset's L2 budget: MNIST 2.0, CIFAR-10 0.5)",
        default="Linf", legacy="Linf")
    transfer: bool = _help("attack each model with examples made against the other model "
                           "(black-box transfer) instead of white-box", default=False)
    eval_attacks: tuple[str, ...] = cell_field("eval_attacks")
    eval_n: Optional[int] = cell_field("eval_n")
    methods: tuple[str, ...] = cell_field("methods")
    metrics: tuple[str, ...] = cell_field("metrics")
    faithfulness_n: Optional[int] = cell_field("faithfulness_n")
    controls: tuple[str, ...] = _help(
        "controls: random_weights, image, edge, noise, cascading and independent (layer "
        "randomization tests), and mechanism (the first layer's threshold channels and the main "
        "method's mass through them, on the cascade_n images)",
        default=("random_weights", "image", "edge", "noise", "cascading", "independent",
                 "mechanism"))
    target: str = cell_field("target")
    n_test: Optional[int] = cell_field("n_test")
    seeds: tuple[int, ...] = _help("training seeds; each replaces both recipes' seed", default=(0,))
    cascade_n: int = _help("images for the layer randomization tests", default=200)
    randomization_draws: int = _help(
        "re-initializations of each model in the layer randomization tests (their intervals "
        "carry the draws' spread)", default=RANDOMIZATION_DRAWS)
    randomization_steps: str = _help(
        "steps of the layer randomization tests: layers (every module with parameters), blocks "
        "(the stem, each stage, the head: rvi.scoring.controls.randomization_steps), or auto (layers "
        "for models with at most 12 parameter layers, as lenet and madry-cnn; else blocks)",
        default="auto", legacy="auto")
    grid_images: int = _help("test images shown in the saliency grid figure", default=6)
    bootstrap: int = _help("bootstrap resamples for 95% confidence intervals", default=2000)
    batch_size: int = cell_field("batch_size")
    device: str = _help("torch device, e.g. cpu or cuda", default="cpu")
    cache_dir: Optional[str] = _help("folder of cached trained models (default: "
                                     "~/.cache/rvi/models)", default=None)
    out_dir: str = _help("folder the result is saved to", default="rvi-results")
    max_minutes: Optional[float] = _help(
        "refuse, before any work, a run whose estimated time exceeds this many minutes (the "
        "estimate is printed with progress either way)", default=None, legacy=None)

    #: Fields whose default depends on ``dataset``: None is replaced by the dataset's default,
    #: and a partial dict in :meth:`from_dict` is filled from it.
    DATASET_DEFAULTS = ("natural", "robust", "attack")

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("model", self.model, MODELS)
        _check_choice("norm", self.norm, NORMS)
        for name, value in self.dataset_defaults(self.dataset, self.norm).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # frozen: resolved once, here
        for name in ("natural", "robust"):
            if not isinstance(getattr(self, name), TrainConfig):
                raise ValueError(f"{name} must be a TrainConfig, got {getattr(self, name)!r}")
        if self.natural.adversarial or not self.robust.adversarial:
            raise ValueError("natural must have adversarial=False and robust adversarial=True; got "
                             f"{self.natural.adversarial} and {self.robust.adversarial}")
        if not isinstance(self.attack, AttackConfig):
            raise ValueError(f"attack must be an AttackConfig, got {self.attack!r}")
        check_bool("transfer", self.transfer)
        check_bool("download", self.download)
        check_cell_options(self, self.attack, self.dataset)
        _check_tuple("controls", self.controls,
                     each=lambda value: _check_choice("controls entry", value, CONTROLS))
        if not isinstance(self.seeds, tuple) or not self.seeds:
            raise ValueError(f"seeds must be a non-empty tuple of integers, got {self.seeds!r}")
        for seed in self.seeds:
            check_int("seeds entry", seed, 0)
        check_int("cascade_n", self.cascade_n, 1)
        check_int("randomization_draws", self.randomization_draws, 1)
        _check_choice("randomization_steps", self.randomization_steps, RANDOMIZATION_STEPS)
        if self.max_minutes is not None:
            _check_range("max_minutes", self.max_minutes, 0.0, 1e7)
        check_int("grid_images", self.grid_images, 1)
        check_int("bootstrap", self.bootstrap, 100)
        _check_strings(self, optional=("data_dir", "cache_dir"), required=("device", "out_dir"))

    @staticmethod
    def dataset_defaults(dataset: str, norm: str = "Linf") -> dict:
        """The defaults of :attr:`DATASET_DEFAULTS` for ``dataset`` and ``norm``: the robust
        recipe trains on, and the adversarial inputs are made by, :func:`dataset_attack` (the
        natural recipe holds it too, unused by training, so that every attack of a saved config
        is the dataset's and an L2 pair trains the same epochs)."""
        attack = dataset_attack(dataset, norm)
        return {"natural": TrainConfig(attack=attack),
                "robust": TrainConfig(adversarial=True, attack=attack), "attack": attack}

    @classmethod
    def from_dict(cls, data: dict):
        """Like every config's, except that a partial ``robust`` or ``attack`` dict is filled from
        the defaults of ``data``'s dataset and norm (``{"dataset": "cifar10", "attack": {"eps":
        0.05}}`` keeps CIFAR-10's step 2/255)."""
        defaults = cls.dataset_defaults(data.get("dataset", cls.dataset),
                                        data.get("norm", cls.norm))
        fields = _field_names(TrainConfig)
        filled = {name: deep_merge(defaults[name].to_dict(), upgrade_train_config(value, fields))
                  for name, value in data.items() if name in defaults and isinstance(value, dict)}
        return super().from_dict({**data, **filled})

    def recipe(self, kind: str, seed: int) -> TrainConfig:
        """The ``natural`` or ``robust`` recipe with its seed replaced by ``seed``."""
        return dataclasses.replace(getattr(self, kind), seed=seed)


def parse_eval_attack(spec: str, base: AttackConfig, dataset: Optional[str] = None) -> AttackConfig:
    """``fgsm``, ``pgd``, ``pgd-STEPSxRESTARTS`` or ``autoattack`` -> an AttackConfig with
    ``base``'s eps (and, for ``pgd``, its alpha and steps). ``NAME@NORM`` (``autoattack@L2``)
    attacks in ``NORM``: with ``base`` when that is ``base``'s norm, else with
    ``dataset_attack(dataset, NORM)``, the dataset's usual budget in that norm.

    Raises:
        ValueError: an unknown entry or norm, or another norm than ``base``'s without a dataset.
    """
    if isinstance(spec, str) and "@" in spec:
        spec, _, norm = spec.partition("@")
        _check_choice("eval_attacks entry's norm (after @)", norm, NORMS)
        if norm != base.norm:
            if dataset is None:
                raise ValueError(f"eval_attacks entry {spec}@{norm} attacks in another norm than "
                                 f"the attack's {base.norm}, at a dataset's default budget, and "
                                 "no dataset is given (rvi sweep evaluates in one norm)")
            base = dataset_attack(dataset, norm)
    if spec in ("fgsm", "autoattack"):
        return dataclasses.replace(base, name=spec)
    if spec == "pgd":
        return dataclasses.replace(base, name="pgd")
    if isinstance(spec, str) and spec.startswith("pgd-"):
        steps, _, restarts = spec[4:].partition("x")
        if steps.isdigit() and restarts.isdigit() and int(steps) > 0 and int(restarts) > 0:
            return dataclasses.replace(base, name="pgd", steps=int(steps), random_start=True,
                                       alpha=min(base.max_budget, 2.5 * base.eps / int(steps)),
                                       restarts=int(restarts))
    raise ValueError(f"eval_attacks entry must be fgsm, pgd, pgd-STEPSxRESTARTS or autoattack; "
                     f"got {spec!r}")


BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class SweepConfig(_Config):
    """The robustness-interpretability curve: models over a grid of training eps x seeds
    (:func:`rvi.run_sweep`, ``docs/sweep.md``)."""

    dataset: str = _help("dataset name", default="mnist")
    data_dir: Optional[str] = _help("folder with the dataset's IDX files (default: $RVI_DATA_DIR "
                                    "or ~/.cache/rvi/data)", default=None)
    download: bool = _help("let torchvision download a missing dataset", default=True)
    model: str = _help("architecture: lenet or madry-cnn", default="lenet")
    eps: tuple[float, ...] = _help("training eps grid; 0 is natural training (default: empty = "
                                   "the dataset's grid in rvi.studies.sweep.EPS_GRIDS)", default=())
    seeds: tuple[int, ...] = _help("training seeds of every eps point", default=(0, 1, 2))
    epochs: Optional[int] = _help("training epochs of every model (default: the recipe's "
                                  "automatic epochs, as the cached sweep models)", default=None)
    reference_eps: Optional[float] = _help(
        "eps of the adversarial inputs and of the robustness axis (default: the dataset's "
        "reference, rvi.studies.sweep.REFERENCE_EPS: mnist 0.3, fashion-mnist 0.1)", default=None)
    eval_eps: tuple[float, ...] = _help(
        "evaluation eps of the accuracy table, besides the reference eps (default: empty = "
        "each model's own training eps)", default=())
    # at each evaluation eps, in one norm; autoattack is the default robustness axis
    eval_attacks: tuple[str, ...] = cell_field("eval_attacks", default=("pgd", "autoattack"))
    robustness: str = _help("the eval_attacks entry whose accuracy at the reference eps is the "
                            "robustness axis", default="autoattack")
    methods: tuple[str, ...] = cell_field("methods")
    metrics: tuple[str, ...] = cell_field("metrics")
    target: str = cell_field("target")
    n_test: Optional[int] = cell_field("n_test")
    eval_n: Optional[int] = cell_field("eval_n")
    faithfulness_n: Optional[int] = cell_field("faithfulness_n")
    batch_size: int = cell_field("batch_size")
    bootstrap: int = _help("bootstrap resamples of the rank-correlation intervals", default=2000)
    device: str = _help("torch device of every job, e.g. cpu or cuda", default="cpu")
    cache_dir: Optional[str] = _help("folder of cached trained models (default: "
                                     "~/.cache/rvi/models)", default=None)
    out_dir: str = _help("folder of the job records, tables and figures; a rerun resumes there",
                         default="rvi-sweep")
    backend: str = _help("who runs the jobs: local (a process pool) or ray", default="local")
    workers: Optional[int] = _help("jobs at once with the local backend; 1 runs them in this "
                                   "process (default: one per CPU core)", default=None)
    threads: Optional[int] = _help("torch threads per job, and CPUs a ray task asks for "
                                   "(default: cores / workers locally, 1 with ray)", default=None)
    gpus_per_job: float = _help("GPUs a ray task asks for when device is cuda (fractions share "
                                "a GPU)", default=1.0)
    ray_address: Optional[str] = _help("ray.init address: auto joins a running cluster "
                                       "(default: start a local one, or use the one this "
                                       "process already joined)", default=None)

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("model", self.model, MODELS)
        check_bool("download", self.download)
        for name in ("eps", "eval_eps"):
            _check_tuple(name, getattr(self, name), empty_ok=True, each=lambda value, name=name:
                         _check_range(f"{name} entry", value, 0.0, 1.0, low_open=name == "eval_eps"))
        if not self.eps and self.dataset not in EPS_GRIDS:
            raise ValueError(f"eps must be given for dataset {self.dataset!r} (no default grid)")
        if self.reference_eps is None and self.dataset not in REFERENCE_EPS:
            raise ValueError(f"reference_eps must be given for dataset {self.dataset!r}")
        if self.reference_eps is not None:
            _check_range("reference_eps", self.reference_eps, 0.0, 1.0)
        if not isinstance(self.seeds, tuple) or not self.seeds or \
                len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be a non-empty tuple without repeats, got {self.seeds!r}")
        for seed in self.seeds:
            check_int("seeds entry", seed, 0)
        optional_int(self.epochs, "epochs")
        check_cell_options(self)
        if self.robustness not in self.eval_attacks:
            raise ValueError(f"robustness must be one of eval_attacks {self.eval_attacks!r}, "
                             f"got {self.robustness!r}")
        for name in ("workers", "threads"):
            optional_int(getattr(self, name), name)
        check_int("bootstrap", self.bootstrap, 100)
        _check_range("gpus_per_job", self.gpus_per_job, 0.0, 64.0, low_open=False)
        _check_choice("backend", self.backend, BACKENDS)
        _check_strings(self, optional=("data_dir", "cache_dir", "ray_address"),
                       required=("device", "out_dir"))

    @property
    def eps_grid(self) -> tuple:
        """The training eps values, ascending: ``eps`` or the dataset's default grid."""
        return tuple(sorted(float(e) for e in (self.eps or EPS_GRIDS[self.dataset])))

    @property
    def reference(self) -> float:
        """The reference eps: ``reference_eps`` or the dataset's."""
        return float(self.reference_eps if self.reference_eps is not None
                     else REFERENCE_EPS[self.dataset])

    def eval_eps_for(self, train_eps: float) -> tuple:
        """Evaluation eps of a model trained at ``train_eps``: the reference eps, then
        ``eval_eps`` (or, when empty, the model's own eps if it is > 0), without repeats."""
        extra = self.eval_eps if self.eval_eps else ((train_eps,) if train_eps > 0 else ())
        return tuple(dict.fromkeys((self.reference, *map(float, extra))))


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` laid on ``base``: nested dicts merged key by key, anything else replaced."""
    return {**base, **{key: deep_merge(base[key], value) if isinstance(value, dict) and
                       isinstance(base.get(key), dict) else value for key, value in over.items()}}


_NESTED = {("TrainConfig", "attack"): AttackConfig, ("BenchmarkConfig", "natural"): TrainConfig,
           ("BenchmarkConfig", "robust"): TrainConfig, ("BenchmarkConfig", "attack"): AttackConfig}
