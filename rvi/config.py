"""Frozen configuration dataclasses for every knob in rvi.

Each field carries its help text in ``metadata["help"]``; the command line builds exactly one flag
per field from it (``rvi/cli.py``), so defaults and help never drift apart. Values are checked in
``__post_init__`` and a bad value raises ``ValueError`` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

ATTACKS = ("fgsm", "pgd", "autoattack")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "onecycle", "cosine")


def _help(text: str, **kwargs: Any) -> Any:
    """A dataclass field whose help text travels in its metadata."""
    return field(metadata={"help": text}, **kwargs)


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = True) -> None:
    ok_low = value > low if low_open else value >= low
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not ok_low or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_choice(name: str, value: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


class _Config:
    """Shared helpers: plain-dict round trip for JSON records and checkpoints."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

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


@dataclass(frozen=True)
class AttackConfig(_Config):
    """An L-inf attack built by torchattacks.

    ``eps`` and ``alpha`` are in pixel units of [0, 1] images.
    """

    name: str = _help("attack: fgsm, pgd or autoattack (torchattacks)", default="pgd")
    eps: float = _help("L-inf budget in [0, 1] pixel units", default=0.3)
    alpha: float = _help("PGD step size in [0, 1] pixel units", default=0.1)
    steps: int = _help("PGD iterations", default=7)
    random_start: bool = _help("PGD starts from a uniform random point in the eps-ball", default=True)
    restarts: int = _help("PGD random restarts (the worst case over restarts counts)", default=1)

    def __post_init__(self) -> None:
        _check_choice("attack name", self.name, ATTACKS)
        _check_range("eps", self.eps, 0.0, 1.0)
        _check_range("alpha", self.alpha, 0.0, 1.0)
        _check_int("steps", self.steps, 1)
        _check_int("restarts", self.restarts, 1)
        if not isinstance(self.random_start, bool):
            raise ValueError(f"random_start must be True or False, got {self.random_start!r}")

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``PGD-7 eps=0.3 alpha=0.1``."""
        if self.name == "fgsm":
            return f"FGSM eps={self.eps:g}"
        if self.name == "autoattack":
            return f"AutoAttack eps={self.eps:g}"
        restarts = f" x{self.restarts} restarts" if self.restarts > 1 else ""
        return f"PGD-{self.steps} eps={self.eps:g} alpha={self.alpha:g}{restarts}"


@dataclass(frozen=True)
class TrainConfig(_Config):
    """A training recipe: natural, or adversarial on torchattacks PGD examples."""

    adversarial: bool = _help("train on PGD examples (attack settings below) instead of clean images",
                              default=False)
    attack: AttackConfig = _help("attack used to make training examples when adversarial",
                                 default_factory=AttackConfig)
    epochs: int = _help("passes over the training set", default=10)
    batch_size: int = _help("images per optimizer step", default=128)
    optimizer: str = _help("adam or sgd", default="adam")
    lr: float = _help("(peak) learning rate", default=1e-3)
    schedule: str = _help("learning-rate schedule: constant, onecycle or cosine", default="constant")
    momentum: float = _help("SGD momentum (ignored by adam)", default=0.9)
    weight_decay: float = _help("L2 weight decay", default=0.0)
    seed: int = _help("seed for initialization, shuffling and PGD random starts", default=0)

    def __post_init__(self) -> None:
        if not isinstance(self.adversarial, bool):
            raise ValueError(f"adversarial must be True or False, got {self.adversarial!r}")
        if not isinstance(self.attack, AttackConfig):
            raise ValueError(f"attack must be an AttackConfig, got {self.attack!r}")
        if self.adversarial and self.attack.name == "autoattack":
            raise ValueError("attack name for adversarial training must be fgsm or pgd, got 'autoattack'")
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_range("lr", self.lr, 0.0, 10.0)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_range("momentum", self.momentum, 0.0, 1.0, low_open=False)
        _check_range("weight_decay", self.weight_decay, 0.0, 1.0, low_open=False)
        _check_int("seed", self.seed, 0)

    @property
    def label(self) -> str:
        kind = f"adversarial ({self.attack.label})" if self.adversarial else "natural"
        return (f"{kind}, {self.epochs} epochs, {self.optimizer} lr {self.lr:g} {self.schedule}, "
                f"batch {self.batch_size}, seed {self.seed}")


_NESTED = {("TrainConfig", "attack"): AttackConfig}


def optional_int(value: Optional[int], name: str, minimum: int = 1) -> Optional[int]:
    """Check an optional integer argument (``None`` means "all")."""
    if value is not None:
        _check_int(name, value, minimum)
    return value
