"""What a run will cost, before it starts: model passes per stage, timed on the run's own models.

A run's time has two parts. The model passes (a forward over one image, and a backward where a
gradient is taken) are timed on each model and device (:func:`model_speed`). Everything else
(Captum's bookkeeping, the metrics' sorting and blurring, the similarity measures) does not
depend on the model; it is measured, with the passes it makes, by running the pipeline's own
stages on a few images through a stand-in model of the same input and output shape whose own
passes cost next to nothing (:class:`CostModel`). The stage times then scale with the run's
image counts, cells, seeds, randomization steps and draws:

- ``train``: epochs x training images x (the training attack's steps + 1 training step) per
  model;
- ``attack`` and ``evaluate``: each attack's steps x restarts per image (AutoAttack, PGD with
  restarts: counted as if every image survived every attack, an upper bound);
- ``explain``: the stand-in's passes and time per image, scaled to ``n`` images (cleanliness) and
  ``faithfulness_n`` images (faithfulness);
- ``randomization``: per model, mode and draw, the stand-in's cost of one step times the
  model's steps (:func:`rvi.scoring.controls.randomization_steps`);
- ``mechanism``: one map per first-layer channel.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import NamedTuple, Optional

import torch
from torch import nn

from .._core.catalog import RANDOMIZATION_STEPS
from .._core.checks import seeded
from ..attribution import METHOD_REGISTRY
from ..config import AttackConfig
from ..metrics import METRICS
from ..metrics.mechanism import first_convolution
from .controls import RANDOMIZATION_MODES, randomization_steps
from .pipeline import CellSpec, score_model_set
from .records import ModelSet

#: Stages of a run, in order (the keys of a result's ``timings_seconds``, without ``/seedS``).
STAGES = ("train", "attack", "evaluate", "explain", "randomization", "mechanism")
#: Image counts the stand-in probe runs the pipeline on (a line through them separates what each
#: batch costs once from what each image costs).
PROBE_SIZES = (8, 40)
#: A model's passes are timed on batches that double from 2 images until one batch takes this
#: long (or reaches the batch size).
TIMING_SECONDS = 0.25
#: Timings per batch size; the fastest is kept (other processes only ever slow a pass down).
TIMING_REPEATS = 3
#: AutoAttack's model passes per image if every image survived all four attacks (standard
#: version: APGD-CE 100 steps, APGD-T 9 targets x 100, FAB-T 9 x 100, Square 5,000 queries),
#: each counted as a gradient pass: an upper bound.
AUTOATTACK_PASSES = 100 + 900 + 900 + 5000
#: Above this many predicted minutes, the estimate lists settings that would fit.
SUGGEST_ABOVE_MINUTES = 30.0


class ModelSpeed(NamedTuple):
    """Seconds per image of one model on its device: a forward pass; a forward with the backward
    to the input only (what attacks and attribution methods take); and a training step's forward
    with the backward to the weights."""

    forward: float
    gradient: float
    training: float


def model_speed(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> ModelSpeed:
    """Time ``model``'s passes per image (:class:`ModelSpeed`) on batches of ``images`` (repeated
    as needed) that double from 2 until one takes :data:`TIMING_SECONDS` or reaches
    ``batch_size``. Each size is timed :data:`TIMING_REPEATS` times after a warm-up call (a new
    batch shape builds its kernels first) and the fastest is kept. The model is left as it was.

    Shape:
        images: (N, C, H, W) float in [0, 1], N >= 1.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        size = min(2, batch_size)
        while True:
            _passes(model, images, size, device)  # warm-up
            timed = min(_passes(model, images, size, device) for _ in range(TIMING_REPEATS))
            if size >= batch_size or timed[2] * size >= TIMING_SECONDS:
                break
            size = min(batch_size, 2 * size)
    finally:
        model.train(was_training)
    return ModelSpeed(*timed)


def _passes(model: nn.Module, images: torch.Tensor, size: int, device) -> tuple:
    """Seconds per image of a forward, a forward with the input's gradient, and a forward with
    the weights' gradients, on ``size`` images."""
    x = images[torch.arange(size) % len(images)].to(device)
    seconds = []
    tick = time.perf_counter()
    with torch.no_grad():
        model(x)
    seconds.append(time.perf_counter() - tick)
    x.requires_grad_(True)
    tick = time.perf_counter()
    torch.autograd.grad(model(x).sum(), x)
    seconds.append(time.perf_counter() - tick)
    x.requires_grad_(False)
    tick = time.perf_counter()
    model(x).sum().backward()
    seconds.append(time.perf_counter() - tick)
    model.zero_grad(set_to_none=True)
    return tuple(s / size for s in seconds)


class Estimate(NamedTuple):
    """Predicted seconds per stage of a whole run (:data:`STAGES`, zero where a stage does no
    work), and what the prediction assumed."""

    seconds: dict
    notes: tuple

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def lines(self) -> list:
        """One line per stage with work, then the total, then the notes."""
        rows = [f"  {stage:<14}{_minutes(s):>10}" for stage, s in self.seconds.items() if s > 0]
        return rows + [f"  {'total':<14}{_minutes(self.total):>10}"] + [f"  ({n})" for n in self.notes]

    def dominant(self, count: int = 2) -> list:
        """The ``count`` costliest stages, costliest first."""
        return sorted((s for s in self.seconds if self.seconds[s] > 0),
                      key=lambda s: -self.seconds[s])[:count]


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


#: What shrinks each stage, for the refusal message and the suggestions.
SHRINK_FLAGS = {
    "train": "--natural-epochs / --robust-epochs, or models already in the cache",
    "attack": "--n-test, or an attack with fewer --attack-steps",
    "evaluate": "--eval-attacks (AutoAttack and pgd-SxR cost most), --eval-n",
    "explain": "--n-test, --faithfulness-n, --metrics (faithfulness metrics cost most), --methods",
    "randomization": "--cascade-n, --randomization-draws, --randomization-steps blocks, --controls",
    "mechanism": "--cascade-n, or --controls without mechanism",
}


def attack_passes(config: AttackConfig) -> int:
    """Gradient passes per image of one attack (restarts and AutoAttack as upper bounds)."""
    if config.name == "autoattack":
        return AUTOATTACK_PASSES
    if config.name == "fgsm":
        return 1
    return config.steps * config.restarts


class CostModel:
    """The measured unit costs of one run's models and settings: each model's speed, its
    randomization steps and first-layer channels, and the stand-in probe of the methods, metrics
    and controls. :meth:`predict` turns them into stage times for any image counts.

    Args:
        spec: the run's cells (methods, metrics, controls, attacks, batch size).
        models: the run's model set (its trained names and controls).
        trained: ``{name: model}`` of the compared models; their weights need not be trained
            (only their speed and layout are read), and they are left as they were.
        images: the run's test images, (N, C, H, W) float in [0, 1].
    """

    def __init__(self, spec: CellSpec, models: ModelSet, trained: dict, images: torch.Tensor,
                 num_classes: int) -> None:
        self.speeds = {name: model_speed(model, images, spec.batch_size)
                       for name, model in trained.items()}
        self.steps = {name: {g: len(randomization_steps(model, images[:1], g)) + 1
                             for g in RANDOMIZATION_STEPS} for name, model in trained.items()}
        self.channels = {name: _channels(model) for name, model in trained.items()}
        self.probe = _probe(spec, models, images, num_classes)

    def predict(self, spec: CellSpec, n: int, seeds: int, train_seconds: float = 0.0) -> Estimate:
        """Predicted seconds per stage of ``seeds`` sets of models scored with ``spec`` on ``n``
        images (``spec`` may differ from the measured one in its counts and steps, not in its
        methods, metrics or controls), plus ``train_seconds`` of training."""
        seconds = dict.fromkeys(STAGES, 0.0)
        speeds = self.speeds.values()
        mean = ModelSpeed(*(sum(s[i] for s in speeds) / len(speeds) for i in range(3)))
        cascade = min(spec.cascade_n, n)
        modes = [m for m in RANDOMIZATION_MODES if m in spec.controls]
        faithful_n = n if spec.faithfulness_n is None else min(n, spec.faithfulness_n)
        for part, count in (("cells", n), ("faithfulness", faithful_n)):
            seconds["explain"] += self.probe.scaled(part, count, spec.batch_size, mean)
        for name, speed in self.speeds.items():
            seconds["attack"] += n * (attack_passes(spec.attack) * speed.gradient + speed.forward)
            seconds["evaluate"] += n * speed.forward + sum(
                count * attack_passes(config) * speed.gradient
                for config, count in spec.evaluations if config != spec.attack)
            seconds["randomization"] += (
                len(modes) * spec.randomization_draws * self.steps[name][spec.randomization_steps]
                * self.probe.scaled("step", cascade, spec.batch_size, speed))
            if "mechanism" in spec.controls:
                method = METHOD_REGISTRY[spec.methods[0]]  # a forward, then its gradients
                seconds["mechanism"] += self.channels[name] * cascade * (
                    speed.forward + method.expansion * speed.gradient)
        seconds = {stage: value * seeds for stage, value in seconds.items()}
        seconds["train"] = train_seconds
        notes = []
        if any(c.name == "autoattack" or c.restarts > 1 for c, _ in spec.evaluations) or \
                spec.attack.name == "autoattack" or spec.attack.restarts > 1:
            notes.append("AutoAttack and PGD restarts counted as if every image survived: an "
                         "upper bound")
        return Estimate(seconds, tuple(notes))


def _channels(model: nn.Module) -> int:
    """Output channels of the first convolution (0 without one)."""
    try:
        return first_convolution(model).out_channels
    except ValueError:
        return 0


def training_seconds(speed: ModelSpeed, epochs: int, images: int, attack_steps: int) -> float:
    """Predicted seconds of a training run: per epoch and image, the attack's gradient passes
    (0 for natural training) and the training step's one."""
    return epochs * images * (attack_steps * speed.gradient + speed.training)


#: Settings tried, one more at a time, when a run is predicted above the bound: ``(field,
#: value(n))`` with ``n`` the run's test images; a setting is kept only where it shortens the run.
SMALLER_SETTINGS = (("randomization_steps", lambda n: "blocks"),
                    ("randomization_draws", lambda n: 2),
                    ("randomization_draws", lambda n: 1),
                    ("cascade_n", lambda n: max(1, min(50, n // 4))),
                    ("faithfulness_n", lambda n: max(1, min(200, n // 4))),
                    ("n_test", lambda n: max(1, min(200, n // 2))))


def suggestions(cost: CostModel, config, n: int, train_seconds: float, bound: float) -> list:
    """Settings of :data:`SMALLER_SETTINGS`, added one at a time to ``config`` (a
    :class:`rvi.config.BenchmarkConfig`) where each shortens the run, as flags with the
    predicted total; stops at the first that fits under ``bound`` seconds. Nothing is changed:
    these are printed for the user."""
    def total(settings) -> float:
        count = n if settings.n_test is None else min(n, settings.n_test)
        return cost.predict(CellSpec.from_benchmark(settings, count), count, len(config.seeds),
                            train_seconds).total

    lines, changed, flags, before = [], config, [], total(config)
    for name, value_for in SMALLER_SETTINGS:
        value = value_for(n)
        trial = dataclasses.replace(changed, **{name: value})
        after = total(trial)
        if after >= before:  # e.g. blocks on a model whose blocks are its layers
            continue
        changed, before = trial, after
        flags = [f for f in flags if not f.startswith(f"--{name.replace('_', '-')} ")]
        flags.append(f"--{name.replace('_', '-')} {value}")
        lines.append(f"{' '.join(flags)}: {_minutes(after)}")
        if after <= bound:
            break
    return lines


class _Probe(NamedTuple):
    """Seconds and passes ``(forward images, backward images)`` of the stand-in runs, each a
    line ``fixed + per_image * images`` fitted through two probe sizes, keyed ``cells`` (all but
    faithfulness), ``faithfulness`` and ``step`` (one randomization step of one model and mode)."""

    seconds: dict
    passes: dict

    def scaled(self, part: str, images: int, batch_size: int, speed: ModelSpeed) -> float:
        """Seconds of ``part`` on ``images`` images: the fixed part once per batch."""
        batches = max(1, -(-images // batch_size))

        def at(line: tuple) -> float:
            fixed, slope = line
            return batches * fixed + slope * images

        forward, backward = self.passes[part]
        return (at(self.seconds[part]) + at(forward) * speed.forward
                + at(backward) * max(speed.gradient - speed.forward, 0.0))


def _probe(spec: CellSpec, models: ModelSet, images: torch.Tensor, num_classes: int) -> _Probe:
    """Run the pipeline's explain and randomization stages through stand-in models on
    :data:`PROBE_SIZES` images each, with every metric and without the faithfulness ones, and
    fit each part's seconds and passes as a line in the images."""
    sizes = sorted({min(k, len(images)) for k in PROBE_SIZES})
    measured = [_probe_once(spec, models, images[:k].cpu(), num_classes) for k in sizes]

    def line(values):
        if len(values) == 1:
            return 0.0, values[0] / sizes[0]
        slope = max((values[-1] - values[0]) / (sizes[-1] - sizes[0]), 0.0)
        return max(values[0] - slope * sizes[0], 0.0), slope

    parts = measured[0][0]
    return _Probe({p: line([m[0][p] for m in measured]) for p in parts},
                  {p: tuple(line([m[1][p][i] for m in measured]) for i in range(2)) for p in parts})


def _probe_once(spec: CellSpec, models: ModelSet, x: torch.Tensor, num_classes: int) -> tuple:
    """``(seconds, passes)`` of one stand-in run on the images ``x``."""
    k = len(x)
    labels = torch.arange(k) % num_classes
    counter = _Counter()
    standins = {name: _StandIn(x.shape[1:], num_classes, counter)
                for name in [*models.trained, *models.controls]}
    trained = {name: standins[name] for name in models.trained}
    controls = {name: standins[name] for name in models.controls}
    faithfulness = [m for m in spec.metrics if METRICS[m].family == "faithfulness"]
    modes = [m for m in RANDOMIZATION_MODES if m in spec.controls]
    base = dataclasses.replace(spec, evaluations=(), faithfulness_n=None, cascade_n=k,
                               randomization_draws=1, grid_images=1, randomization_steps="layers",
                               controls=tuple(c for c in spec.controls if c != "mechanism"))

    def run(metrics: tuple) -> _StageLog:
        log = _StageLog(counter)
        score_model_set(dataclasses.replace(base, metrics=metrics), 0, trained, controls, models,
                        x, labels, num_classes, log)
        return log

    every = run(spec.metrics)
    cells = run(tuple(m for m in spec.metrics if m not in faithfulness)) if faithfulness else every
    steps = max(1, len(models.trained) * len(modes) * (len(randomization_steps(
        standins[models.trained[0]], x[:1], "layers")) + 1))
    seconds = {"cells": cells.stage("explain"), "step": every.stage("randomization") / steps,
               "faithfulness": max(every.stage("explain") - cells.stage("explain"), 0.0)}
    faithful = zip(every.passes_of("explain"), cells.passes_of("explain"))
    passes = {"cells": cells.passes_of("explain"),
              "step": tuple(p / steps for p in every.passes_of("randomization")),
              "faithfulness": tuple(max(a - b, 0) for a, b in faithful)}
    return seconds, passes


class _Counter:
    """Images through the stand-in models' forward and backward passes."""

    def __init__(self) -> None:
        self.forward = self.backward = 0

    def now(self) -> tuple:
        return self.forward, self.backward

    def __deepcopy__(self, memo) -> "_Counter":  # randomized copies of a stand-in count here too
        return self


class _StandIn(nn.Module):
    """A model of the run's input and output shape whose own passes cost next to nothing:
    flatten, a 16-unit ReLU layer, the logits. Counts the images of its passes."""

    def __init__(self, shape: tuple, num_classes: int, counter: _Counter) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 16), nn.ReLU(),
                                 nn.Linear(16, num_classes))
        self.counter = counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.counter.forward += len(x)
        out = self.net(x)
        if out.requires_grad:
            out.register_hook(lambda grad: self._backward(len(grad)))
        return out

    def _backward(self, images: int) -> None:
        self.counter.backward += images


class _StageLog(dict):
    """The ``timings`` dict :func:`rvi.scoring.pipeline.score_model_set` fills at the end of each stage
    (``"{stage}/seed{seed}"``), which also records the stand-ins' passes since the previous
    stage ended."""

    def __init__(self, counter: _Counter) -> None:
        super().__init__()
        self.counter, self.mark, self.passes = counter, counter.now(), {}

    def __setitem__(self, key: str, value: float) -> None:
        now = self.counter.now()
        self.passes[key] = (now[0] - self.mark[0], now[1] - self.mark[1])
        self.mark = now
        super().__setitem__(key, value)

    def stage(self, name: str) -> float:
        return sum(v for k, v in self.items() if k.split("/")[0] == name)

    def passes_of(self, name: str) -> tuple:
        found = [v for k, v in self.passes.items() if k.split("/")[0] == name]
        return tuple(sum(p[i] for p in found) for i in range(2))


def estimate_run(config, spec: CellSpec, models: ModelSet, trained: dict, images: torch.Tensor,
                 num_classes: int, *, train_seconds: float = 0.0, show: bool) -> Estimate:
    """The predicted time of a run of ``config`` (a :class:`rvi.config.BenchmarkConfig`: its
    seeds and ``max_minutes``) scoring ``spec`` on ``images``, printed when ``show`` and checked
    by :func:`check_estimate`. The stand-ins leave the caller's RNG as it was."""
    with seeded(0, torch.device("cpu")):
        cost = CostModel(spec, models, trained, images, num_classes)
    n = len(images)
    estimate = cost.predict(spec, n, len(config.seeds), train_seconds)
    check_estimate(estimate, config.max_minutes,
                   lambda bound: suggestions(cost, config, n, train_seconds, bound), show)
    return estimate


def check_estimate(estimate: Estimate, max_minutes: Optional[float], suggest, show: bool) -> None:
    """Print ``estimate`` (when ``show``) and refuse a run predicted above ``max_minutes``.

    Args:
        suggest: ``suggest(bound_seconds)`` -> lines of smaller settings with their predicted
            totals (:func:`suggestions`), asked for when the total exceeds ``max_minutes`` or,
            without it, :data:`SUGGEST_ABOVE_MINUTES`.

    Raises:
        ValueError: the total exceeds ``max_minutes``; the message names the stages that
            dominate, the flags that shrink them and the settings that would fit.
    """
    if show:
        print("estimated time on this machine (rvi.scoring.cost):", *estimate.lines(), sep="\n",
              file=sys.stderr, flush=True)
    bound = 60 * (SUGGEST_ABOVE_MINUTES if max_minutes is None else max_minutes)
    if estimate.total <= bound:
        return
    tips = suggest(bound)
    if max_minutes is not None:
        stages = estimate.dominant()
        raise ValueError(
            f"max_minutes is {max_minutes:g}, but this run is estimated at "
            f"{_minutes(estimate.total)}, most of it "
            + " and ".join(f"{s} ({_minutes(estimate.seconds[s])})" for s in stages)
            + "; " + "; ".join(f"{s} shrinks with {SHRINK_FLAGS[s]}" for s in stages)
            + ("; predicted with smaller settings: " + "; ".join(tips) if tips else ""))
    if show and tips:
        print(f"  above {SUGGEST_ABOVE_MINUTES:g} minutes; settings that take less (not applied):",
              *(f"    {tip}" for tip in tips), sep="\n", file=sys.stderr, flush=True)
