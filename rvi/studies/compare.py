"""Bring your own models: the benchmark's attacks, maps, metrics, controls and statistics on
models the user gives.

:func:`compare` checks every model before any work (an ``nn.Module`` with parameters that maps
(N, C, H, W) inputs in [0, 1] to (N, K) logits; normalization belongs inside the model), runs
the Guided Backprop pre-flight, builds each model's random-weights control (a copy with
``reset_parameters()`` called on every submodule that owns parameters, seeded), and scores the
set through :func:`rvi.scoring.pipeline.score_model_set`, the path :func:`rvi.run_benchmark` uses.

One dict of models is one "seed": intervals are then a bootstrap over images and describe these
models only. A list of dicts (one set of models per training seed, the same names in each) gives
intervals over the per-seed means, as in the benchmark.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
import warnings
import zipfile
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import nn

from .. import distributed as ddp
from .._core.checks import check_images, check_int
from .._core.io import first_line, read_torch_file
from .._core.modelstate import check_finite_logits, model_device, preserved_state
from ..attribution.preflight import check_guided_backprop_model
from ..config import BenchmarkConfig
from ..errors import UnreadableFileError
from ..metrics.basic import check_installed
from ..models.architectures import build_model
from ..models.train import CHECKPOINT_FORMAT, load_checkpoint
from ..report.result import BenchmarkResult
from ..scoring.controls import RANDOMIZATION_MODES, random_weights_model
from ..scoring.cost import estimate_run
from ..scoring.pipeline import CellSpec, score_model_set
from ..scoring.records import ModelSet
from .benchmark import assemble, describe_model, environment

#: Prefix of the random-weights control of model NAME in the records: ``random_weights:NAME``.
RANDOM_PREFIX = "random_weights"
#: torch's deprecation notice for ``torch.jit.load`` (filtered, nothing else).
_JIT_LOAD_WARNING = r"`torch\.jit\.load` is deprecated"
#: How many images the shape check runs each model on.
CHECK_IMAGES = 8


def compare(models: Union[dict, Sequence[dict]], images: torch.Tensor, labels: torch.Tensor,
            config: Optional[BenchmarkConfig] = None, *, reference: Optional[str] = None,
            num_classes: Optional[int] = None, sources: Optional[dict] = None,
            data_name: str = "the given images", progress: bool = False,
            distributed: Optional[bool] = None) -> Optional[BenchmarkResult]:
    """Compare named models on the given images, as :func:`rvi.run_benchmark` compares the
    natural and robust models it trains.

    Shape:
        images: (N, C, H, W) float in [0, 1], any C, H, W; labels: (N,) int64 in [0, K).

    Args:
        models: ``{name: model}`` (two or more; order kept, the first is the default reference),
            or a list of such dicts with the same names, one per training seed. Each model is an
            ``nn.Module`` with parameters returning (N, K) logits for inputs in [0, 1]; it is not
            modified (the random-weights control is a copy).
        images: the test images.
        labels: their true labels.
        config: attack, methods, metrics, controls, batch size, bootstrap ... (default
            ``BenchmarkConfig(seeds=(0, ..., S-1))`` for S model sets). Its ``seeds`` must have
            one entry per model set; seed i drives the attacks' random start, the controls and
            the bootstrap of set i. ``n_test`` uses the first N images. Fields about training
            and data (``dataset``, ``model``, ``natural``, ``robust``, ``cache_dir``) are not
            used, nor ``device``: models run where they are (all on one device), and the
            result's config records that device.
        reference: the model every other one is compared with (default: the first).
        num_classes: K (default: the first model's output width).
        sources: ``{name: text}`` stored with each model's description (e.g. the file it came
            from).
        data_name: what the images are, for the tables' header.
        progress: show progress bars.
        distributed: None (default): shard the images when a process group of 2+ processes
            exists (every rank calls this with the same models and arguments; see
            :func:`rvi.scoring.pipeline.score_model_set`); False: this process works alone; True:
            requires a process group.

    Returns:
        A :class:`~rvi.report.result.BenchmarkResult` whose ``models`` names the compared models, the
        reference and the controls, with each model's class, parameter count and weights
        fingerprint (sha256 of its ``state_dict``); None on ranks other than 0 when sharded.

    Raises:
        ValueError: bad models (not a module, no parameters, wrong output shape, non-finite
            output, a layer without ``reset_parameters()`` when the random-weights or layer
            randomization controls run, a model Guided Backprop would explain wrongly), images
            outside [0, 1], bad labels, reference or config; raised before any work.
        rvi.errors.MissingPackageError: (an ``ImportError``) a chosen metric's optional package
            is not installed; raised before any work.
    """
    started = time.perf_counter()
    distributed = ddp.active(distributed)
    sets = _model_sets(models)
    names = list(sets[0])
    if config is None:
        config = BenchmarkConfig(seeds=tuple(range(len(sets))))
    if not isinstance(config, BenchmarkConfig):
        raise ValueError(f"config must be a BenchmarkConfig or None, got {type(config).__name__}")
    if len(config.seeds) != len(sets):
        raise ValueError(f"config.seeds must have one seed per model set ({len(sets)}), got "
                         f"{config.seeds!r}")
    if reference is None:
        reference = names[0]
    if reference not in names:
        raise ValueError(f"reference must be one of {', '.join(map(repr, names))}, got "
                         f"{reference!r}")
    check_installed(config.metrics)  # before the models run, not when scoring reaches it
    if config.transfer and len(names) != 2:
        raise ValueError(f"config.transfer needs exactly two models, got {len(names)}")
    if sources is not None and (not isinstance(sources, dict) or set(sources) - set(names)):
        raise ValueError(f"sources must be a dict keyed by model names, got {sources!r}")
    check_images(images, labels)
    n = len(images) if config.n_test is None else config.n_test
    if n > len(images):
        raise ValueError(f"config.n_test must be at most {len(images)} (the images given), "
                         f"got {n}")
    images, labels = images[:n], labels[:n]
    devices = {str(model_device(m)) for s in sets for m in s.values()}
    if len(devices) != 1:
        raise ValueError(f"models must all be on one device, got {sorted(devices)}")
    num_classes = check_models(sets, images, labels, num_classes)
    controls = [random_controls(s, seed, config, images[:1])
                for s, seed in zip(sets, config.seeds)]

    with_control = "random_weights" in config.controls
    model_set = ModelSet(tuple(names), reference,
                         {m: _control_name(m) if with_control else None for m in names})
    spec = CellSpec.from_benchmark(config, n)
    estimate = None
    if progress or config.max_minutes is not None:
        estimate = estimate_run(config, spec, model_set, sets[0], images, num_classes,
                                show=progress and (ddp.is_main() or not distributed))
    timings, parts, info = {}, [], []
    for trained, control, seed in zip(sets, controls, config.seeds):
        info += [dict(seed=seed, **describe_model(name, model),
                      **({"source": sources[name]} if sources and name in sources else {}))
                 for name, model in trained.items()]
        parts.append(score_model_set(spec, seed, trained, control, model_set, images, labels,
                                     num_classes, timings, progress, distributed))
    if distributed and not ddp.is_main():
        return None
    timings["total"] = time.perf_counter() - started
    device = str(model_device(sets[0][names[0]]))
    meta = {"kind": "compare", "data": data_name, "n_test": n, "num_classes": num_classes,
            "image_shape": list(images.shape[1:]), "environment": environment(device),
            "timings_seconds": {k: round(v, 2) for k, v in timings.items()}}
    if estimate is not None:
        meta["estimate_seconds"] = {k: round(v, 2) for k, v in estimate.seconds.items()}
    return assemble(dataclasses.replace(config, device=device), parts, meta, model_set, info)


def _control_name(name: str) -> str:
    return f"{RANDOM_PREFIX}:{name}"


def _model_sets(models) -> list:
    """``models`` as a list of ``{name: nn.Module}`` dicts with the same names (checked)."""
    sets = [models] if isinstance(models, dict) else models
    if not isinstance(sets, (list, tuple)) or not sets or \
            not all(isinstance(s, dict) for s in sets):
        raise ValueError("models must be a dict {name: nn.Module} or a non-empty list of such "
                         f"dicts, got {type(models).__name__}")
    names = list(sets[0])
    if len(names) < 2:
        raise ValueError(f"models must hold at least two models to compare, got {names!r}")
    for name in names:
        if not isinstance(name, str) or not name.strip() or name.startswith(RANDOM_PREFIX) \
                or "/" in name:
            raise ValueError(f"model names must be non-empty strings without '/' that do not "
                             f"start with {RANDOM_PREFIX!r}, got {name!r}")
    for index, models_of_seed in enumerate(sets):
        if list(models_of_seed) != names:
            raise ValueError(f"models[{index}] must name the same models in the same order as "
                             f"models[0] ({names}), got {list(models_of_seed)}")
        for name, model in models_of_seed.items():
            where = f"models[{name!r}]" if len(sets) == 1 else f"models[{index}][{name!r}]"
            if not isinstance(model, nn.Module):
                raise ValueError(f"{where} must be an nn.Module returning logits, got "
                                 f"{type(model).__name__}")
            if not any(True for _ in model.parameters()):
                raise ValueError(f"{where} has no parameters; compare needs trained models "
                                 "(there is nothing for the random-weights control to reset)")
    return list(sets)


def check_models(sets: list, images: torch.Tensor, labels: torch.Tensor,
                 num_classes: Optional[int] = None) -> int:
    """Run every model on the first :data:`CHECK_IMAGES` images (eval mode, no gradients; the
    model's mode is restored) and check its output is finite (n, K) logits.

    Returns:
        K: ``num_classes``, or the first model's output width.

    Raises:
        ValueError: naming the model and the shape it returned, e.g. ``models['robust']
            returns shape (8, 3), expected (8, 10)``; or labels outside [0, K).
    """
    if num_classes is not None:
        check_int("num_classes", num_classes, 2)
    probe = images[:CHECK_IMAGES]
    for index, models in enumerate(sets):
        for name, model in models.items():
            where = f"models[{name!r}]" if len(sets) == 1 else f"models[{index}][{name!r}]"
            with preserved_state(model), torch.no_grad():
                model.eval()
                try:
                    out = model(probe.to(model_device(model)))
                except Exception as err:  # any failure of the user's forward pass
                    raise ValueError(f"{where} fails on images of shape "
                                     f"{tuple(probe.shape)}: {type(err).__name__}: {err}") from err
            if not isinstance(out, torch.Tensor):
                raise ValueError(f"{where} must return a logits tensor, got "
                                 f"{type(out).__name__}")
            if num_classes is None and out.ndim == 2 and out.shape[0] == len(probe):
                num_classes = int(out.shape[1])
            expected = (len(probe), num_classes if num_classes is not None else "K")
            if out.ndim != 2 or tuple(out.shape) != expected:
                raise ValueError(f"{where} returns shape {tuple(out.shape)}, expected "
                                 f"{expected}".replace("'K'", "K"))
            check_finite_logits(out, model, where)
    check_images(images, labels, num_classes=num_classes)
    return num_classes


def random_controls(models: dict, seed: int, config: BenchmarkConfig,
                    example: torch.Tensor) -> dict:
    """``{random_weights:NAME: copy of models[NAME] re-initialized with seed}`` when the
    random-weights control runs (else empty), after checking that each model can be
    re-initialized (for the layer randomization tests too) and passes the Guided Backprop
    pre-flight when that method is used (on ``example``, (1, C, H, W))."""
    out = {}
    needs_reset = "random_weights" in config.controls or \
        any(m in config.controls for m in RANDOMIZATION_MODES)
    for name, model in models.items():
        try:
            if "guided_backprop" in config.methods:
                with preserved_state(model), torch.no_grad():
                    model.eval()
                    check_guided_backprop_model(model, example.to(model_device(model)))
            if needs_reset:
                control = random_weights_model(model, seed)
                if "random_weights" in config.controls:
                    out[_control_name(name)] = control.eval()
        except ValueError as err:
            raise ValueError(f"models[{name!r}]: {err}") from err
    return out


# --- files the command line reads ---------------------------------------------------------------

def load_user_model(path, *, trust_pickle: bool = False, num_classes: Optional[int] = None,
                    in_channels: int = 1) -> nn.Module:
    """A model from a file: an rvi checkpoint (``rvi train``; built with ``in_channels`` and
    ``num_classes``, default the saved output layer's width), a TorchScript file
    (``torch.jit.save``), or, only with ``trust_pickle=True``, a whole module saved with
    ``torch.save(model)`` (read with ``weights_only=False``, which runs code from the file).

    Raises:
        FileNotFoundError: no such file.
        rvi.errors.UnreadableFileError: (a ``ValueError``) a truncated or damaged file, or a
            pickle whose classes cannot be imported.
        ValueError: none of the above, or a pickled module without ``trust_pickle``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if zipfile.is_zipfile(path) and any(name.endswith("constants.pkl")
                                        for name in zipfile.ZipFile(path).namelist()):
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated; the file is still read
                warnings.filterwarnings("ignore", message=_JIT_LOAD_WARNING,
                                        category=FutureWarning)
                return torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as err:
            raise UnreadableFileError(f"{path} looks like TorchScript but does not load: "
                                      f"{first_line(err)}") from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # objects other than tensors and containers
        if not trust_pickle:
            raise ValueError(f"{path} is not an rvi checkpoint or a TorchScript file; if it is a "
                             "module saved with torch.save(model) and you trust the file, pass "
                             "--trust-pickle (trust_pickle=True): loading it runs code from the "
                             f"file ({type(err).__name__})") from err
        try:
            model = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # the pickle names a class this Python cannot import, ...
            raise UnreadableFileError(f"{path} does not unpickle ({type(error).__name__}: "
                                      f"{first_line(error)}); the classes of a module saved "
                                      "whole must be importable here") from error
        if not isinstance(model, nn.Module):
            raise ValueError(f"{path} holds a {type(model).__name__}, not an nn.Module") from err
        return model.eval()
    except Exception as err:  # a truncated or damaged file: no flag makes it readable
        raise UnreadableFileError(f"{path} cannot be read by torch.load (truncated or damaged?): "
                                  f"{type(err).__name__}: {first_line(err)}") from err
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        if num_classes is None:
            num_classes = int([v for v in state["model"].values() if v.ndim == 2][-1].shape[0])
        model = build_model(state["architecture"], in_channels=in_channels,
                            num_classes=num_classes)
        load_checkpoint(path, model)
        return model.eval()
    raise ValueError(f"{path} is not an rvi checkpoint, a TorchScript file or a saved module "
                     f"(it holds a {type(state).__name__}; a bare state_dict needs its model "
                     "class: build the model in Python and call rvi.compare)")


def load_images_file(path) -> tuple:
    """``(images, labels)`` from a ``torch.save``d dict ``{"images": (N, C, H, W) float in
    [0, 1], "labels": (N,) int64}``, read with ``weights_only=True``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: another content, or images outside [0, 1].
    """
    path = Path(path)
    data = read_torch_file(path, f"images file not found: {path}",
                           f"--images {str(path)!r} is not a readable torch file")
    if not isinstance(data, dict) or not {"images", "labels"} <= set(data):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"--images {str(path)!r} must hold a dict with 'images' and 'labels', "
                         f"got {got}")
    check_images(data["images"], data["labels"])
    return data["images"], data["labels"]
