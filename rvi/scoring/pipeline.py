"""The per-cell pipeline every study runs: attack -> accuracy -> explain -> score -> records.

:func:`score_model_set` takes a set of models (the compared ones and their random-weights
controls), the test images and labels, and a :class:`CellSpec` (the attack, the evaluation
attacks, methods, metrics, controls), and returns accuracy rows plus per-image records in one
schema (:func:`rvi.scoring.records.record_frame`). :func:`rvi.run_benchmark` and :func:`rvi.compare` call
it once per seed; each sweep job (:func:`rvi.studies.sweep_job.run_job`) calls it for its one model.
Under a process group every rank works on its shard of the images (:func:`shard_align`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import numpy as np
import pandas as pd
import torch

from .. import distributed as ddp
from .._core.checks import derived_seed
from .._core.modelstate import check_finite_model
from .._core.progress import progress_bar
from .._core.reuse import reuse_model_queries
from ..attacks.accuracy import class_probability, count_correct
from ..attacks.adversarial import attack_part, shard_block
from ..attribution.saliency import images_per_call
from ..config import AttackConfig, BenchmarkConfig, parse_eval_attack
from ..metrics import METRICS
from ..metrics.basic import metric_images_per_call
from ..metrics.mechanism import first_convolution, mechanism_summary
from .cell import score_maps, score_maps_with_model, score_model
from .controls import RANDOMIZATION_MODES, TRIVIAL_EXPLAINERS, randomization_curve
from .records import ModelSet, record_frame

#: Decimals kept for the example images and maps stored with a result (for figures).
EXAMPLE_DECIMALS = 4


@dataclass(frozen=True)
class CellSpec:
    """What :func:`score_model_set` does to every model of a set.

    Attributes:
        attack: the attack whose adversarial images are the "adversarial" input (white-box per
            model, or the other model's with ``transfer``).
        evaluations: ``(attack, n)`` pairs: accuracy under ``attack`` on the first ``n`` images
            (after the clean accuracy on all of them); an entry equal to ``attack`` reuses its
            images instead of attacking again.
        methods: attribution methods; the first is the main one (records' target and
            prediction, grid, randomization tests).
        metrics, target, batch_size, faithfulness_n: as in :func:`rvi.scoring.cell.score_model`.
        controls: which of ``random_weights``, the trivial explainers and the randomization
            modes run.
        cascade_n: images of the randomization tests; randomization_draws: re-initializations
            of each model there; randomization_steps: their granularity
            (:func:`rvi.scoring.controls.randomization_steps`); grid_images: images kept for figures.
        transfer: each of two models gets the other's adversarial images.
    """

    attack: AttackConfig
    evaluations: tuple
    methods: tuple
    metrics: tuple
    target: str = "true"
    batch_size: int = 256
    faithfulness_n: Optional[int] = None
    controls: tuple = ()
    cascade_n: int = 0
    randomization_draws: int = 1
    randomization_steps: str = "auto"
    grid_images: int = 0
    transfer: bool = False

    @classmethod
    def from_benchmark(cls, config: BenchmarkConfig, n: int) -> "CellSpec":
        """The cells of a :class:`BenchmarkConfig` on ``n`` test images: its ``eval_attacks``
        (``fgsm`` and ``pgd`` on all ``n``, the costly ones on the first ``eval_n``)."""
        evaluations = tuple(evaluation(spec, config.attack, n, config.eval_n, config.dataset)
                            for spec in config.eval_attacks)
        return cls.from_options(config, config.attack, evaluations,
                                controls=tuple(config.controls), cascade_n=config.cascade_n,
                                randomization_draws=config.randomization_draws,
                                randomization_steps=config.randomization_steps,
                                grid_images=config.grid_images, transfer=config.transfer)

    @classmethod
    def from_options(cls, options, attack: AttackConfig, evaluations: tuple,
                     **study: Any) -> "CellSpec":
        """The cells of ``options`` (anything holding the per-cell options,
        :class:`rvi.config.CellOptions`) with ``attack``, the resolved ``evaluations`` and the
        study's own fields (``controls``, ``cascade_n``, ...)."""
        return cls(attack=attack, evaluations=evaluations, methods=tuple(options.methods),
                   metrics=tuple(options.metrics), target=options.target,
                   batch_size=options.batch_size, faithfulness_n=options.faithfulness_n, **study)


def evaluation(spec: str, base: AttackConfig, n: int, eval_n: Optional[int],
               dataset: Optional[str] = None) -> tuple:
    """``(attack, images)`` of one ``eval_attacks`` entry (:func:`rvi.config.parse_eval_attack`
    with ``base`` and ``dataset``) on ``n`` test images: ``fgsm`` and ``pgd`` (in either norm) on
    all ``n``, the costly ones (``pgd-SxR``, ``autoattack``) on the first ``eval_n`` (None: all)."""
    cheap = spec.partition("@")[0] in ("fgsm", "pgd") or eval_n is None
    return parse_eval_attack(spec, base, dataset), n if cheap else min(eval_n, n)


@contextlib.contextmanager
def timed(timings: dict, stage: str):
    """Record the wall time of the body under ``timings[stage]`` (seconds)."""
    tick = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - tick


class SeedScores(NamedTuple):
    """What :func:`score_model_set` returns for one seed (one set of models)."""

    records: list
    accuracy: list
    randomization: list
    examples: dict
    mechanism: list


#: How many images each compared model is checked on for finite logits before any work.
FINITE_CHECK_IMAGES = 8


def score_model_set(spec: CellSpec, seed: int, trained: dict, controls: dict,
                    models: ModelSet, images: torch.Tensor, labels: torch.Tensor,
                    num_classes: int, timings: dict, progress: bool = False,
                    distributed: bool = False) -> Optional[SeedScores]:
    """Attack, explain and score one set of models: the path :func:`rvi.run_benchmark`,
    :func:`rvi.compare` and every sweep job share.

    Shape:
        images: (N, C, H, W) float in [0, 1]; labels: (N,) int64 in [0, num_classes).

    Args:
        trained: ``{name: model}`` of the compared models, in the order of ``models.trained``;
            each maps (N, C, H, W) inputs in [0, 1] to (N, num_classes) logits.
        controls: ``{name: model}`` of the random-weights control models named in
            ``models.random_weights`` (scored on natural inputs when ``spec.controls`` holds
            ``random_weights``).
        timings: filled with the wall time of each stage under ``"{stage}/seed{seed}"``.
        distributed: every rank of the process group calls this with the same arguments; each
            attacks, explains and scores its contiguous shard of the images
            (:func:`shard_align`), the accuracy counts are summed and the per-image records
            gathered on rank 0. Layer randomization runs on rank 0 alone.

    Returns:
        A :class:`SeedScores`: per-image record frames, accuracy rows (``seed, model, attack``
        (its label, or ``clean``), ``n, accuracy``), layer-randomization rows and the example
        images and maps of the figures; None on ranks other than 0 when
        ``distributed``.
    """
    names = list(models.trained)
    progress = progress and (ddp.is_main() or not distributed)
    part = ddp.shard(len(images), align=shard_align(spec)) if distributed \
        else slice(0, len(images))
    x, y = images[part], labels[part]
    for kind in names:  # refused by its name before any work, not by its class midway
        check_finite_model(trained[kind], images[:FINITE_CHECK_IMAGES], kind)
    with timed(timings, f"attack/seed{seed}"):
        white_box = {kind: attack_part(trained[kind], images, labels, part, spec.attack,
                                       batch_size=spec.batch_size, seed=seed,
                                       num_classes=num_classes)
                     for kind in progress_bar(names, desc=f"attack ({spec.attack.label})",
                                              disable=not progress, unit="model")}
        adversarial = {kind: white_box[transferred_from(kind, names)] if spec.transfer else white_box[kind]
                       for kind in names}

    with timed(timings, f"evaluate/seed{seed}"):
        accuracy = accuracy_rows(spec, trained, images, labels, part, seed, white_box,
                                 num_classes, progress, distributed)

    records = []
    # the faithfulness scores of one seed's cells share curves and logit changes: computed once
    with timed(timings, f"explain/seed{seed}"), reuse_model_queries():
        cells = [(m, i) for m in names for i in ("natural", "adversarial")]
        if "random_weights" in spec.controls:
            cells += [(control, "natural") for control in models.controls]
        every = {**trained, **controls}
        trivial = trivial_maps(spec, x, seed, part.start)
        # a random-weights model is a control for the maps, not for scores of its own output
        control_metrics = [m for m in spec.metrics if METRICS[m].family != "faithfulness"]
        maps_for_grid = {}
        for model_kind, input_kind in progress_bar(cells if len(x) else [],
                                                   desc="explain and score",
                                                   disable=not progress, unit="cell"):
            inputs = x if input_kind == "natural" else adversarial[model_kind]
            references = {"clean": x}
            if input_kind == "adversarial":
                references["perturbed"] = inputs
            scores, attributions = score_model(
                every[model_kind], inputs, references=references, methods=spec.methods,
                metrics=spec.metrics if model_kind in trained else control_metrics,
                target=spec.target, labels=y, seed=seed, batch_size=spec.batch_size,
                faithfulness_n=spec.faithfulness_n, offset=part.start)
            main = attributions[spec.methods[0]]
            if (model_kind, input_kind) == (models.reference, "natural"):
                scores.update(score_maps(trivial, x, spec.metrics))
            if model_kind in trained and input_kind == "natural":
                scores.update(score_maps_with_model(
                    trained[model_kind], trivial, x, main.target, spec.metrics, seed=seed,
                    batch_size=spec.batch_size, faithfulness_n=spec.faithfulness_n,
                    offset=part.start))
            probability = class_probability(every[model_kind], inputs, main.target,
                                            spec.batch_size)
            records.append(record_frame(seed, model_kind, input_kind, y, main, scores,
                                        part.start, probability.numpy()))
            maps_for_grid[f"{model_kind}/{input_kind}"] = main.maps[:spec.grid_images]

    randomization = []
    modes = [m for m in RANDOMIZATION_MODES if m in spec.controls]
    if modes and (ddp.is_main() or not distributed):
        with timed(timings, f"randomization/seed{seed}"):
            randomization = randomization_rows(spec, trained, images, labels, seed, modes,
                                               progress)
    mechanism, first_layer = [], {}
    if "mechanism" in spec.controls and (ddp.is_main() or not distributed):
        with timed(timings, f"mechanism/seed{seed}"):
            mechanism, first_layer = mechanism_rows(spec, trained, images, labels, seed)
    if distributed:
        records, adversarial, maps_for_grid = gather(spec, part, records, adversarial,
                                                     maps_for_grid)
        if not ddp.is_main():
            return None
    shown = examples(spec, images, labels, adversarial, maps_for_grid)
    if first_layer:
        shown["first_layer"] = first_layer
    return SeedScores(records, accuracy, randomization, shown, mechanism)


#: The first convolution's filters are stored for the figure up to this many (a ResNet stem's 64
#: would not be read one by one).
FIGURE_FILTERS = 16


def mechanism_rows(spec: CellSpec, trained: dict, images, labels, seed: int) -> tuple:
    """Per trained model, :func:`rvi.metrics.mechanism.mechanism_summary` of the main method on the first
    ``cascade_n`` images (a row with ``threshold_channels`` None for a model without a
    convolution), and its first convolution's filters for the figure: ``(rows, {model:
    {"weights": (K, k, k) channel means, "thresholds": threshold or None per filter}})``."""
    count = min(spec.cascade_n, len(images)) or len(images)
    rows, first_layer = [], {}
    for kind, model in trained.items():
        try:
            conv = first_convolution(model)
        except ValueError:
            rows.append(dict(seed=seed, model=kind, threshold_channels=None, thresholds="",
                             threshold_share=np.nan, foreground_share=np.nan, n=count))
            continue
        summary = mechanism_summary(model, images[:count], labels[:count], target=spec.target,
                                    method=spec.methods[0], batch_size=spec.batch_size)
        rows.append(dict(seed=seed, model=kind, threshold_channels=summary["threshold_channels"],
                         thresholds=" ".join(f"{t:.2f}" for t in summary["thresholds"]),
                         threshold_share=summary["threshold_share"],
                         foreground_share=summary["foreground_share"], n=count))
        weights = conv.weight.detach().float().cpu().mean(1)[:FIGURE_FILTERS]
        first_layer[kind] = {
            "weights": np.round(weights.numpy().astype(np.float64), EXAMPLE_DECIMALS).tolist(),
            "thresholds": summary["levels"][:FIGURE_FILTERS]}  # the summary's own channels
    return rows, first_layer


def shard_align(spec: CellSpec) -> int:
    """Block size of the benchmark's shards: the least common multiple of ``batch_size``, the
    images per model call of each method (:func:`rvi.attribution.saliency.images_per_call`: Integrated
    Gradients, SmoothGrad, whose noise stream is skipped by whole calls) and each metric
    (:func:`rvi.metrics.basic.metric_images_per_call`: infidelity and sensitivity-max, which re-seeds
    SmoothGrad at each call), and AutoAttack's 250-image chunk. A shard is then attacked,
    explained and scored in the batches (and with the random draws) of one process.
    Deletion/insertion (``batch_size // 21`` images a call) are left out: aligning to them
    would make shards far coarser (2,750 images for the default batch of 250); a shard starting
    inside one of their batches gives that batch's first images scores that may differ from one
    process's in float rounding."""
    attacks = [spec.attack] + [attack_config for attack_config, _ in spec.evaluations]
    sizes = [shard_block(spec.batch_size, attacks)]
    sizes += [images_per_call(method, spec.batch_size) for method in spec.methods]
    sizes += [metric_images_per_call(metric, spec.batch_size) for metric in spec.metrics]
    return math.lcm(*sizes)


def transferred_from(kind: str, names: list) -> str:
    """The model whose adversarial examples ``kind`` gets when attacks are transferred."""
    if len(names) != 2:
        raise ValueError(f"transfer needs exactly two compared models, got {len(names)}: "
                         f"{', '.join(names)}")
    return names[1] if kind == names[0] else names[0]


def accuracy_rows(spec: CellSpec, models: dict, images, labels, part: slice,
                  seed: int, white_box: dict, num_classes: int, progress: bool,
                  distributed: bool = False) -> list:
    """Clean accuracy on all images, then each of ``spec.evaluations`` on its first ``n``
    images. The benchmark attack's white-box examples (of the images in ``part``) are reused,
    not made again. Each rank counts the correct predictions on its ``part``; when
    ``distributed`` the counts are summed over ranks, and each is divided in float32, as
    ``tensor.float().mean()`` does in one process."""
    rows, correct = [], []
    for kind in progress_bar(models, desc="accuracy under attack", disable=not progress,
                             unit="model"):
        model = models[kind]
        rows.append(dict(seed=seed, model=kind, attack="clean", n=len(images)))
        correct.append(count_correct(model, images[part], labels[part]))
        for attack_config, count in spec.evaluations:
            here = slice(min(part.start, count), min(part.stop, count))
            if attack_config == spec.attack:
                adversarial = white_box[kind][:here.stop - here.start]
            else:
                adversarial = attack_part(model, images, labels, here, attack_config,
                                          batch_size=spec.batch_size, seed=seed,
                                          num_classes=num_classes)
            rows.append(dict(seed=seed, model=kind, attack=attack_config.label, n=count))
            correct.append(count_correct(model, adversarial, labels[here]))
    for row, total in zip(rows, ddp.all_sum(correct) if distributed else correct):
        row["accuracy"] = float(torch.tensor(float(total), dtype=torch.float32) / row["n"])
    return rows


def trivial_maps(spec: CellSpec, images, seed: int, offset: int = 0) -> dict:
    """``{explainer: (N, 1, H, W) maps}`` of the trivial explainers in ``spec.controls`` on the
    clean test images (starting at image ``offset``), made once per seed."""
    return {name: TRIVIAL_EXPLAINERS[name](images, seed=seed, offset=offset)
            for name in TRIVIAL_EXPLAINERS if name in spec.controls}


def randomization_rows(spec: CellSpec, models: dict, images, labels, seed: int,
                       modes: list, progress: bool) -> list:
    """Per trained model (``models``: name -> model), mode and draw: mean cleanliness scores and
    map similarities to the trained model's map as layers are re-initialized
    (:func:`rvi.scoring.controls.randomization_curve`). Draw 0 re-initializes layer ``i`` with seed
    ``seed + i`` (as rvi did before draws), draw ``d`` with ``derived_seed(seed, d) + i``."""
    count = min(spec.cascade_n, len(images))
    metrics = [m for m in spec.metrics if METRICS[m].family == "cleanliness"]
    rows = []
    jobs = [(kind, mode, draw) for kind in models for mode in modes
            for draw in range(spec.randomization_draws)]
    for kind, mode, draw in progress_bar(jobs, desc="randomization tests",
                                         disable=not progress, unit="run"):
        curve = randomization_curve(models[kind], images[:count], spec.target,
                                    labels=labels[:count], method=spec.methods[0],
                                    metrics=metrics, mode=mode,
                                    seed=seed if draw == 0 else derived_seed(seed, draw),
                                    batch_size=spec.batch_size,
                                    steps=spec.randomization_steps)
        rows += [dict(seed=seed, model=kind, draw=draw, **row) for row in curve]
    return rows


def gather(spec: CellSpec, part: slice, records: list, adversarial: dict,
           maps: dict) -> tuple:
    """Rank 0: every rank's record frames joined cell by cell, and the first ``grid_images``
    adversarial images and maps; other ranks: ``(None, None, None)``."""
    keep = max(0, min(spec.grid_images - part.start, part.stop - part.start))
    ranks = ddp.gather_records([{"records": records,
                                 "adversarial": {k: v[:keep] for k, v in adversarial.items()},
                                 "maps": {k: v[:keep] for k, v in maps.items()}}])
    if ranks is None:
        return None, None, None
    working = [r for r in ranks if r["records"]]  # empty shards (fewer blocks than ranks) last
    records = [pd.concat([r["records"][i] for r in working], ignore_index=True)
               for i in range(len(working[0]["records"]))]
    adversarial = {k: torch.cat([r["adversarial"][k] for r in ranks]) for k in adversarial}
    maps = {k: torch.cat([r["maps"][k] for r in working]) for k in working[0]["maps"]}
    return records, adversarial, maps


def examples(spec: CellSpec, images, labels, adversarial: dict, maps: dict) -> dict:
    k = min(spec.grid_images, len(images))

    def pack(tensor):  # (N, C, H, W) -> the first k as (k, H, W): colour images as channel mean
        grey = tensor[:k].mean(1).cpu().numpy().astype(np.float64)
        return np.round(grey, EXAMPLE_DECIMALS).tolist()

    return {"labels": labels[:k].tolist(), "clean": pack(images),
            "adversarial": {kind: pack(x) for kind, x in adversarial.items()},
            "maps": {cell: pack(m) for cell, m in maps.items()},
            "method": spec.methods[0]}
