"""The 2x2 study: {naturally, adversarially trained model} x {natural, adversarial input}.

:func:`run_benchmark` trains (or loads from the cache) both models for every seed, attacks each
with torchattacks, explains clean and adversarial images with Captum, scores every map with every
metric against the clean and the perturbed image, adds the controls, and returns a
:class:`BenchmarkResult` of per-image records from which every table and figure is derived.
Each seed's models are scored by :func:`score_model_set`, the path :func:`rvi.compare` uses for
models the user brings.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import platform
import time
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed as ddp
from .records import NATURAL_ROBUST, ModelSet
from .attacks import attack
from .cache import get_trained_model
from .config import BenchmarkConfig, parse_eval_attack
from .controls import TRIVIAL_EXPLAINERS, random_weights_model, randomization_curve
from .data import Dataset, load_dataset
from .evaluate import predict
from .metrics import METRICS
from .result import BenchmarkResult
from .scoring import score_maps, score_model

#: Decimals kept for the example images and maps stored with a result (for figures).
_EXAMPLE_DECIMALS = 4


def default_cache_dir() -> Path:
    """``$RVI_CACHE_DIR`` if set, else ``~/.cache/rvi/models``."""
    if os.environ.get("RVI_CACHE_DIR"):
        return Path(os.environ["RVI_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rvi" / "models"


@contextlib.contextmanager
def _timed(timings: dict, stage: str):
    """Record the wall time of the body under ``timings[stage]`` (seconds)."""
    tick = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - tick


def run_benchmark(config: BenchmarkConfig, *, data: Optional[Dataset] = None,
                  progress: bool = False, distributed: Optional[bool] = None
                  ) -> Optional[BenchmarkResult]:
    """Run the study described by ``config``.

    Each piece of work is done once per seed: one set of adversarial examples per model (also
    used for the accuracy row of the same attack), one map per model x input x method scored by
    every metric against every reference, the trivial explainers once per image, and one map per
    randomization step scored by every metric and similarity measure.

    Args:
        config: what to run.
        data: an already loaded dataset to use instead of ``config.dataset`` (its name must
            match ``config.dataset``; cached models are keyed by its content).
        progress: show progress bars (training, attacks, attributions).
        distributed: None (default): shard when a process group of 2+ processes exists (every
            rank must call this with the same arguments; training is data-parallel, and the
            test images are sharded as in :func:`score_model_set`); False: this process works
            alone; True: requires a process group.

    Returns:
        A :class:`~rvi.result.BenchmarkResult`; None on ranks other than 0 when sharded.
    """
    if not isinstance(config, BenchmarkConfig):
        raise ValueError(f"config must be a BenchmarkConfig, got {type(config).__name__}")
    if data is not None and not isinstance(data, Dataset):
        raise ValueError(f"data must be an rvi.data.Dataset or None, got {type(data).__name__}")
    distributed = ddp.active(distributed)
    started = time.perf_counter()
    if data is None:
        data = load_dataset(config.dataset, config.data_dir, download=config.download)
    elif data.name != config.dataset:
        raise ValueError(f"data is {data.name!r} but config.dataset is {config.dataset!r}")
    n = len(data.test_images) if config.n_test is None else config.n_test
    if n > len(data.test_images):
        raise ValueError(f"n_test must be at most {len(data.test_images)} for {data.name}, got {n}")
    images, labels = data.test_images[:n], data.test_labels[:n]
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    timings, training, info = {}, {}, []
    parts = []
    for seed in config.seeds:
        with _timed(timings, f"train/seed{seed}"):
            trained, controls = _models(config, data, seed, cache_dir, training, progress)
        info += [dict(seed=seed, **describe_model(name, model)) for name, model in trained.items()]
        parts.append(score_model_set(config, seed, trained, controls, NATURAL_ROBUST, images,
                                     labels, data.num_classes, timings, progress, distributed))
    if not ddp.is_main() and distributed:
        return None

    timings["total"] = time.perf_counter() - started
    meta = {"timings_seconds": {k: round(v, 2) for k, v in timings.items()},
            "training": training, "environment": environment(config.device),
            "n_test": n, "dataset_size": {"train": len(data.train_images),
                                          "test": len(data.test_images)}}
    return assemble(config, parts, meta, NATURAL_ROBUST, info)


RANDOMIZATION_MODES = ("cascading", "independent")


class SeedScores(NamedTuple):
    """What :func:`score_model_set` returns for one seed (one set of models)."""

    records: list
    accuracy: list
    randomization: list
    examples: dict


def score_model_set(config: BenchmarkConfig, seed: int, trained: dict, controls: dict,
                    models: ModelSet, images: torch.Tensor, labels: torch.Tensor,
                    num_classes: int, timings: dict, progress: bool = False,
                    distributed: bool = False) -> Optional[SeedScores]:
    """Attack, explain and score one set of models: the path :func:`run_benchmark` and
    :func:`rvi.compare` share.

    Shape:
        images: (N, C, H, W) float in [0, 1]; labels: (N,) int64 in [0, num_classes).

    Args:
        trained: ``{name: model}`` of the compared models, in the order of ``models.trained``;
            each maps (N, C, H, W) inputs in [0, 1] to (N, num_classes) logits.
        controls: ``{name: model}`` of the random-weights control models named in
            ``models.random_weights`` (scored on natural inputs when ``config.controls`` holds
            ``random_weights``).
        timings: filled with the wall time of each stage under ``"{stage}/seed{seed}"``.
        distributed: every rank of the process group calls this with the same arguments; each
            attacks, explains and scores its contiguous shard of the images
            (:func:`shard_align`), the accuracy counts are summed and the per-image records
            gathered on rank 0. Layer randomization runs on rank 0 alone.

    Returns:
        A :class:`SeedScores`: per-image record frames, accuracy rows, layer-randomization
        rows and the example images and maps of the figures; None on ranks other than 0 when
        ``distributed``.
    """
    names = list(models.trained)
    progress = progress and (ddp.is_main() or not distributed)
    part = ddp.shard(len(images), align=shard_align(config)) if distributed \
        else slice(0, len(images))
    x, y = images[part], labels[part]
    with _timed(timings, f"attack/seed{seed}"):
        white_box = {kind: _attack(trained[kind], images, labels, part, config.attack, config,
                                   seed, num_classes)
                     for kind in tqdm(names, desc=f"attack ({config.attack.label})",
                                      disable=not progress, unit="model")}
        adversarial = {kind: white_box[_other(kind, names)] if config.transfer else white_box[kind]
                       for kind in names}

    with _timed(timings, f"evaluate/seed{seed}"):
        accuracy = _accuracy_rows(config, trained, images, labels, part, seed, white_box,
                                  num_classes, progress, distributed)

    records = []
    with _timed(timings, f"explain/seed{seed}"):
        cells = [(m, i) for m in names for i in ("natural", "adversarial")]
        if "random_weights" in config.controls:
            cells += [(control, "natural") for control in models.controls]
        every = {**trained, **controls}
        maps_for_grid = {}
        for model_kind, input_kind in tqdm(cells if len(x) else [], desc="explain and score",
                                           disable=not progress, unit="cell"):
            inputs = x if input_kind == "natural" else adversarial[model_kind]
            references = {"clean": x}
            if input_kind == "adversarial":
                references["perturbed"] = inputs
            scores, attributions = score_model(
                every[model_kind], inputs, references=references, methods=config.methods,
                metrics=config.metrics, target=config.target, labels=y, seed=seed,
                batch_size=config.batch_size, faithfulness_n=config.faithfulness_n,
                offset=part.start)
            if (model_kind, input_kind) == (models.reference, "natural"):
                scores.update(_trivial_scores(config, x, seed, part.start))
            main = attributions[config.methods[0]]
            records.append(_record_frame(seed, model_kind, input_kind, y, main, scores,
                                         part.start))
            maps_for_grid[f"{model_kind}/{input_kind}"] = main.maps[:config.grid_images]

    randomization = []
    modes = [m for m in RANDOMIZATION_MODES if m in config.controls]
    if modes and (ddp.is_main() or not distributed):
        with _timed(timings, f"randomization/seed{seed}"):
            randomization = _randomization_rows(config, trained, images, labels, seed, modes,
                                                progress)
    if distributed:
        records, adversarial, maps_for_grid = _gather(config, part, records, adversarial,
                                                      maps_for_grid)
        if not ddp.is_main():
            return None
    return SeedScores(records, accuracy, randomization,
                      _examples(config, images, labels, adversarial, maps_for_grid))


def shard_align(config: BenchmarkConfig) -> int:
    """Block size of the benchmark's shards: the least common multiple of ``batch_size``, the
    images per model call of Integrated Gradients, SmoothGrad (whose noise stream is skipped by
    whole calls), infidelity and sensitivity-max (which re-seeds SmoothGrad at each call), and
    AutoAttack's 250-image chunk. A shard is then attacked, explained and scored in the batches
    (and with the random draws) of one process. Deletion/insertion (``batch_size // 21`` images
    a call) are left out: aligning to them would make shards far coarser (2,750 images for the
    default batch of 250); a shard starting inside one of their batches gives that batch's
    first images scores that may differ from one process's in float rounding."""
    from .attacks import AUTOATTACK_CHUNK
    from .faithfulness import PERTURB_SAMPLES

    expansion = {"integrated_gradients": 50, "smoothgrad": 50}  # explain()'s defaults
    factors = [expansion[m] for m in config.methods if m in expansion]
    factors += [PERTURB_SAMPLES for m in config.metrics if m in ("infidelity", "sensitivity_max")]
    sizes = [config.batch_size] + [max(1, config.batch_size // f) for f in factors]
    attacks = [config.attack.name] + [parse_eval_attack(s, config.attack).name
                                      for s in config.eval_attacks]
    if "autoattack" in attacks:
        sizes.append(AUTOATTACK_CHUNK)
    return math.lcm(*sizes)


def _attack(model, images, labels, part: slice, attack_config, config: BenchmarkConfig,
            seed: int, num_classes: int) -> torch.Tensor:
    """Adversarial versions of ``images[part]``, equal to those of one :func:`rvi.attack` call
    on all ``images``: PGD random starts and AutoAttack chunks follow ``offset``. PGD with
    ``restarts > 1`` draws noise for the images still classified correctly only, which cannot
    be skipped without attacking them, so it attacks ``images[:part.stop]`` and keeps the
    shard (exact, but no faster than one process)."""
    if part.stop <= part.start:
        return images[part].clone()
    start = part.start
    if attack_config.name == "pgd" and attack_config.random_start and attack_config.restarts > 1:
        start = 0
    adversarial = attack(model, images[start:part.stop], labels[start:part.stop], attack_config,
                         batch_size=config.batch_size, seed=seed, num_classes=num_classes,
                         offset=start)
    return adversarial[part.start - start:]


def _gather(config: BenchmarkConfig, part: slice, records: list, adversarial: dict,
            maps: dict) -> tuple:
    """Rank 0: every rank's record frames joined cell by cell, and the first ``grid_images``
    adversarial images and maps; other ranks: ``(None, None, None)``."""
    keep = max(0, min(config.grid_images - part.start, part.stop - part.start))
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


def assemble(config: BenchmarkConfig, parts: list, meta: dict, models: ModelSet,
             info: list) -> BenchmarkResult:
    """One :class:`BenchmarkResult` from the :class:`SeedScores` of every seed (the figures'
    examples are the first seed's); ``info`` has one row per (seed, trained model) from
    :func:`describe_model`."""
    return BenchmarkResult(
        config=config, records=pd.concat([r for p in parts for r in p.records], ignore_index=True),
        accuracy=pd.DataFrame([r for p in parts for r in p.accuracy]),
        cascading=pd.DataFrame([r for p in parts for r in p.randomization]),
        examples=parts[0].examples, meta=meta, models={**models.to_dict(), "info": info})


def describe_model(name: str, model: nn.Module) -> dict:
    """What rvi can know about a model: ``{"model": name, "class": its class name,
    "parameters": parameter count, "fingerprint": weights_fingerprint(model)}``."""
    return {"model": name, "class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "fingerprint": weights_fingerprint(model)}


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 (hex) of the model's ``state_dict``: for each entry in order, its name, dtype,
    shape and the raw bytes of its values (CPU, contiguous, native byte order)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _other(kind: str, names: list) -> str:
    """The model whose adversarial examples ``kind`` gets when attacks are transferred."""
    if len(names) != 2:
        raise ValueError(f"transfer needs exactly two compared models, got {len(names)}: "
                         f"{', '.join(names)}")
    return names[1] if kind == names[0] else names[0]


def _models(config: BenchmarkConfig, data: Dataset, seed: int, cache_dir: Path, training: dict,
            progress: bool) -> dict:
    """``(trained, controls)``: the natural and robust models of ``seed`` (trained or cached)
    and the shared random-weights control; each training run is summarized in ``training``."""
    models = {}
    for kind in NATURAL_ROBUST.trained:
        recipe = config.recipe(kind, seed)
        model, history, path = get_trained_model(data, config.model, recipe, cache_dir,
                                                 device=config.device, quiet=not progress)
        models[kind] = model
        training[f"{kind}/seed{seed}"] = {
            "recipe": recipe.label, "checkpoint": path.name, "epochs": len(history),
            "train_seconds": round(sum(h["seconds"] for h in history), 1),
            "final_train_loss": history[-1]["loss"],
            "final_train_accuracy": history[-1]["accuracy"]}
    control = random_weights_model(config.model, seed, in_channels=data.image_shape[0],
                                   num_classes=data.num_classes).to(config.device).eval()
    return models, {"random_weights": control}


def _accuracy_rows(config: BenchmarkConfig, models: dict, images, labels, part: slice,
                   seed: int, white_box: dict, num_classes: int, progress: bool,
                   distributed: bool = False) -> list:
    """Clean accuracy and ``fgsm``/``pgd`` on all images; the costly attacks (``pgd-SxR``,
    ``autoattack``) on the first ``eval_n``. The benchmark attack's white-box examples (of the
    images in ``part``) are reused, not made again. Each rank counts the correct predictions on
    its ``part``; when ``distributed`` the counts are summed over ranks, and each is divided in
    float32, as ``tensor.float().mean()`` does in one process."""
    subset = min(config.eval_n or len(images), len(images))
    rows, correct = [], []
    for kind in tqdm(models, desc="accuracy under attack", disable=not progress, unit="model"):
        model = models[kind]
        rows.append(dict(seed=seed, model=kind, attack="clean", n=len(images)))
        correct.append(_correct(model, images[part], labels[part]))
        for spec in config.eval_attacks:
            attack_config = parse_eval_attack(spec, config.attack)
            count = len(images) if spec in ("fgsm", "pgd") else subset
            here = slice(min(part.start, count), min(part.stop, count))
            if attack_config == config.attack:
                adversarial = white_box[kind][:here.stop - here.start]
            else:
                adversarial = _attack(model, images, labels, here, attack_config, config, seed,
                                      num_classes)
            rows.append(dict(seed=seed, model=kind, attack=attack_config.label, n=count))
            correct.append(_correct(model, adversarial, labels[here]))
    for row, total in zip(rows, ddp.all_sum(correct) if distributed else correct):
        row["accuracy"] = float(torch.tensor(float(total), dtype=torch.float32) / row["n"])
    return rows


def _correct(model, images, labels) -> int:
    """How many of ``images`` the model classifies as ``labels``."""
    return int((predict(model, images) == labels.cpu()).sum()) if len(images) else 0


def _trivial_scores(config: BenchmarkConfig, images, seed: int, offset: int = 0) -> dict:
    """The trivial explainers' scores on the clean test images (starting at image ``offset``),
    made once per seed."""
    maps = {name: TRIVIAL_EXPLAINERS[name](images, seed=seed, offset=offset)
            for name in TRIVIAL_EXPLAINERS if name in config.controls}
    return score_maps(maps, images, config.metrics)


def _record_frame(seed: int, model_kind: str, input_kind: str, labels, main, scores: dict,
                  offset: int = 0) -> pd.DataFrame:
    """One row per image of a cell (images ``offset`` on): identity, prediction, the main map's
    zero flag, scores."""
    return pd.DataFrame({
        "seed": seed, "model": model_kind, "input": input_kind,
        "image": np.arange(offset, offset + len(labels)), "label": labels.numpy(),
        "target": main.target.numpy(),
        "prediction": main.predicted.numpy(), "correct": (main.predicted == labels).numpy(),
        "zero_map": main.zero_maps.cpu().numpy(),
        **{key.column: values for key, values in scores.items()}})


def _randomization_rows(config: BenchmarkConfig, models: dict, images, labels, seed: int,
                        modes: list, progress: bool) -> list:
    """Per trained model (``models``: name -> model) and mode: mean cleanliness scores and map
    similarities to the trained model's map as layers are re-initialized
    (:func:`rvi.controls.randomization_curve`)."""
    count = min(config.cascade_n, len(images))
    metrics = [m for m in config.metrics if METRICS[m].family == "cleanliness"]
    rows = []
    jobs = [(kind, mode) for kind in models for mode in modes]
    for kind, mode in tqdm(jobs, desc="randomization tests", disable=not progress, unit="run"):
        curve = randomization_curve(models[kind], images[:count], config.target,
                                    labels=labels[:count], method=config.methods[0],
                                    metrics=metrics, mode=mode, seed=seed,
                                    batch_size=config.batch_size)
        rows += [dict(seed=seed, model=kind, **row) for row in curve]
    return rows


def _examples(config, images, labels, adversarial: dict, maps: dict) -> dict:
    k = min(config.grid_images, len(images))

    def pack(tensor):  # (N, C, H, W) -> the first k as (k, H, W): colour images as channel mean
        grey = tensor[:k].mean(1).cpu().numpy().astype(np.float64)
        return np.round(grey, _EXAMPLE_DECIMALS).tolist()

    return {"labels": labels[:k].tolist(), "clean": pack(images),
            "adversarial": {kind: pack(x) for kind, x in adversarial.items()},
            "maps": {cell: pack(m) for cell, m in maps.items()},
            "method": config.methods[0]}


def environment(device: str) -> dict:
    """Versions and machine facts stored with every result."""
    import captum
    import torchattacks

    from . import __version__

    info = {"rvi": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchattacks": torchattacks.__version__, "captum": captum.__version__,
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
