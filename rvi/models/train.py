"""The training loop: natural, or adversarial on torchattacks PGD examples; checkpoints; resume.

A checkpoint is written atomically at every epoch end and holds the model and optimizer state,
the recipe (:class:`~rvi.config.TrainConfig`) and the per-epoch metrics. Calling
:func:`train_model` again with the same checkpoint path resumes after the last finished epoch.
Shuffling and PGD random starts are seeded from ``(config.seed, epoch)``, so a resumed run ends
with the same weights as an uninterrupted one.

Inside a process group of several processes (``torchrun``, :mod:`rvi.distributed`) the same loop
trains one model with ``DistributedDataParallel``: every rank draws the same permutation, takes a
contiguous part of each global batch of ``batch_size`` images, and skips the PGD noise of the
other ranks' images, so the optimizer steps are those of single-process training (see
``docs/scaling.md`` for how close). Rank 0 writes the checkpoints.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import distributed as ddp
from .._core.checks import check_bool, check_images, check_model, check_path, seeded
from .._core.io import atomic_write, read_torch_file
from .._core.modelstate import channels_last as channels_last_weights
from .._core.modelstate import (check_model_labels, has_channels_last_weights, model_device, preserved_state,
                                wants_channels_last)
from .._core.progress import progress_bar
from ..attacks.adversarial import build_attack, skip_random_starts
from ..config import THRESHOLD_START_DATASETS, THRESHOLD_START_WEIGHT, TrainConfig
from .architectures import build_model

CHECKPOINT_FORMAT = "rvi-checkpoint-1"
_log = logging.getLogger("rvi")
#: Bump whenever the training loop's semantics change (what weights a recipe yields); it is part of
#: the model cache key, so cached models trained by older code are not reused.
TRAINING_VERSION = 1
PathLike = Union[str, Path]


def new_model(architecture: str, config: TrainConfig, num_classes: int = 10,
              in_channels: int = 1) -> nn.Module:
    """A freshly initialized ``architecture`` whose weights depend only on ``config.seed``."""
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    with seeded(config.seed, torch.device("cpu")):
        return build_model(architecture, in_channels=in_channels, num_classes=num_classes)


def train_model(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                config: TrainConfig, *, checkpoint_path: Optional[PathLike] = None,
                architecture: Optional[str] = None, quiet: bool = False,
                on_epoch_end: Optional[Callable[[dict], None]] = None,
                channels_last: Optional[bool] = None,
                dataset_info: Optional[dict] = None, distributed: Optional[bool] = None) -> list:
    """Train ``model`` in place and return the per-epoch metrics.

    Args:
        model: classifier taking [0, 1] images, on the device to train on.
        images: (N, C, H, W) float in [0, 1] training images (any device).
        labels: (N,) int64 labels.
        config: the recipe.
        checkpoint_path: file to write at every epoch end; if it exists, training resumes from it
            (it must have been made with the same recipe and architecture).
        architecture: the model's name, stored in the checkpoint (default: its class name).
        quiet: hide the progress bar.
        on_epoch_end: called with each epoch's metrics dict after its checkpoint is written.
        channels_last: hold weights and batches in channels-last memory order while training
            (None: for (N, C, H, W) images when the model's weights already are channels-last,
            or when :func:`rvi._core.modelstate.wants_channels_last` says so: rvi's LeNet and Madry
            CNN on the CPU, never a user's model unmarked). It changes only the order of float
            sums, not what is computed; ``False`` gives rvi's layout before version 0.2.
        dataset_info: what the images are (e.g. :meth:`rvi.data.Dataset.info`: name, split,
            fingerprint), stored in the checkpoint so that ``rvi evaluate`` can refuse to score
            the model on its own training images. Its name picks the automatic recipe
            (:func:`auto_threshold_start`: on ``mnist`` and ``mnist-5k`` 12 epochs with the
            threshold start; without ``dataset_info``, 40 without it).
        distributed: train data-parallel over the process group (None: when there is one with
            two or more processes). Every rank must call with the same arguments and a model on
            its own device (``rvi.distributed.device()``); each rank ends with the same weights.
            ``False`` trains this process's model alone.

    Returns:
        A list with one dict per epoch: ``epoch``, ``loss``, ``accuracy`` (on the examples trained
        on, i.e. adversarial ones when adversarial), ``lr``, ``seconds``.

    Raises:
        ValueError: bad images/labels (labels outside the model's outputs included), a bad
            argument, or a checkpoint made for another recipe or architecture.
    """
    check_model(model)
    model = ddp.unwrap(model)
    sync = ddp.active(distributed)
    check_path("checkpoint_path", checkpoint_path, optional=True)
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    if dataset_info is not None and not isinstance(dataset_info, dict):
        raise ValueError(f"dataset_info must be a dict or None, got {type(dataset_info).__name__}")
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise ValueError(f"on_epoch_end must be callable or None, got {on_epoch_end!r}")
    check_images(images, labels)
    check_model_labels(model, images, labels)
    architecture = architecture or type(model).__name__
    device = model_device(model)
    steps_per_epoch = -(-len(images) // config.batch_size)
    data_info = {"name": (dataset_info or {}).get("name"), "n_train": len(images),
                 "image_shape": tuple(images.shape[1:])}
    recipe = resolve_recipe(config, data_info, model)  # refuses a warm-up or start above its epochs
    epochs = recipe.epochs
    warmup, start = recipe.eps_warmup_epochs, recipe.threshold_start_epochs
    hold_threshold = _threshold_start(model, config, images) if start else None
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config, epochs * steps_per_epoch)
    history: list = []
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        state = load_checkpoint(checkpoint_path, model, architecture=architecture)
        # a recipe with automatic epochs or warm-up resumes one with them written out
        if resolve_recipe(TrainConfig.from_dict(state["config"]), data_info, model) != recipe:
            raise ValueError(
                f"checkpoint_path {str(checkpoint_path)!r} was made with another recipe "
                f"({state['config']}); use a new path or the same TrainConfig")
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        history = list(state["history"])

    if sync and _needs_cuda() and device.type != "cuda":
        raise ValueError(f"model must be on a CUDA device for the nccl backend, got {device}")
    world = ddp.world_size() if sync else 1
    layout = _memory_format(model, images, channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=config.precision == "bfloat16")
    with preserved_state(model), \
            channels_last_weights(model, enabled=layout == torch.channels_last):
        # attacks work on the plain module; only the training forward pass goes through DDP
        attack = build_attack(model, config.attack) if config.adversarial else None
        net = model
        if sync:
            net = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        for epoch in range(len(history) + 1, epochs + 1):
            held = epoch <= start
            if held:
                hold_threshold()
            net.train()
            started = time.perf_counter()
            with seeded(config.seed * 100_003 + epoch, device):
                order = torch.randperm(len(images))
                total_loss, correct = torch.zeros((), device=device), torch.zeros((), device=device)
                kind = "adversarial" if config.adversarial else "natural"
                bar = progress_bar(range(steps_per_epoch), disable=quiet or not ddp.is_main(),
                                   leave=False, unit="batch",
                                   desc=f"{kind} training, epoch {epoch}/{epochs}")
                for step in bar:
                    idx = order[step * config.batch_size:(step + 1) * config.batch_size]
                    n_step, part = len(idx), (ddp.shard(len(idx)) if sync else slice(None))
                    idx = idx[part]
                    x = images[idx].to(device).contiguous(memory_format=layout)
                    y = labels[idx].to(device)
                    with autocast:
                        if attack is not None:
                            if warmup:
                                _set_strength(attack, config,
                                              ((epoch - 1) * steps_per_epoch + step + 1)
                                              / (warmup * steps_per_epoch))
                            x = _attack_part(attack, config, x, y, part, n_step, images.shape[1:])
                        logits = net(x)
                        # summed and scaled so that DDP's average over ranks is the global mean
                        loss = (F.cross_entropy(logits.float(), y, reduction="sum") * (world / n_step)
                                if sync else F.cross_entropy(logits.float(), y))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if held:
                        hold_threshold()
                    if scheduler is not None:
                        scheduler.step()
                    total_loss += loss.detach() * (n_step / world)
                    correct += (logits.argmax(1) == y).sum()
                    if not quiet and (step % 20 == 0 or step == steps_per_epoch - 1):
                        seen = min((step + 1) * config.batch_size, len(images))
                        bar.set_postfix(loss=f"{float(total_loss) / seen * world:.3f}",
                                        acc=f"{float(correct) / seen * world:.3f}")
            total_loss, correct = (ddp.all_sum([total_loss, correct]) if sync
                                   else (float(total_loss), float(correct)))
            metrics = {"epoch": epoch, "loss": total_loss / len(images),
                       "accuracy": correct / len(images), "lr": optimizer.param_groups[0]["lr"],
                       "seconds": time.perf_counter() - started}
            history.append(metrics)
            if checkpoint_path is not None:
                # in a process group rank 0 writes while the others wait for it
                (ddp.on_main if sync else _call)(
                    save_checkpoint, checkpoint_path, model, config, history, optimizer, scheduler,
                    architecture=architecture, dataset=dataset_info)
            if on_epoch_end is not None:
                on_epoch_end(dict(metrics))
    if history and ddp.is_main():
        auto_start = auto_threshold_start(model, images.shape[1], data_info["name"])
        _log.info("training done: %s", training_summary(history, config, len(images), auto_start))
    return history


def _set_strength(attack, config: TrainConfig, progress: float) -> None:
    """Scale the training attack's eps and step by ``min(1, progress)``: the eps warm-up, where
    ``progress`` is the batch's index (from 1) over the warm-up's batches."""
    scale = min(1.0, progress)
    for part in getattr(attack, "attacks", [attack]):  # a MultiAttack holds one PGD per restart
        part.eps = config.attack.eps * scale
        if hasattr(part, "alpha"):
            part.alpha = config.attack.alpha * scale


def _first_conv(model: nn.Module) -> Optional[nn.Conv2d]:
    return next((module for module in model.modules() if isinstance(module, nn.Conv2d)), None)


def threshold_start_fits(model: nn.Module, image_channels: int) -> bool:
    """Whether ``model``'s first layer takes the threshold start (``TrainConfig.
    threshold_start_epochs``) on images of ``image_channels`` channels: its first ``Conv2d`` takes
    one channel, has a bias and an odd kernel, and the images have one channel. The automatic
    recipe holds the start only where it does (:func:`auto_threshold_start`)."""
    conv = _first_conv(model)
    return (conv is not None and conv.in_channels == 1 and image_channels == 1
            and conv.bias is not None and all(size % 2 for size in conv.kernel_size))


def auto_threshold_start(model: nn.Module, image_channels: int, dataset: Optional[str]) -> bool:
    """Whether the automatic recipe (:data:`rvi.config.AUTO_RECIPES`) trains ``model`` with the
    threshold start: ``dataset`` (a name; None for images of unknown origin) is one of
    :data:`rvi.config.THRESHOLD_START_DATASETS` (MNIST) and the model's first layer takes the
    start (:func:`threshold_start_fits`)."""
    return dataset in THRESHOLD_START_DATASETS and threshold_start_fits(model, image_channels)


def resolve_recipe(config: TrainConfig, data_info: dict, architecture: Union[str, nn.Module]) -> TrainConfig:
    """The recipe a model trains: ``config`` with its automatic epochs, eps warm-up and threshold
    start written out (:meth:`~rvi.config.TrainConfig.resolved`) for the data and the model. The
    one place a recipe is resolved: the cache keys its result and training follows it; a recipe
    with nothing automatic left is returned as it is (so resolving twice changes nothing).

    Args:
        data_info: the dataset's ``info()`` dict (its ``name``, ``n_train``, ``image_shape`` and
            ``num_classes`` are read).
        architecture: a model name (an untrained model of it is built to look at its first layer)
            or the model itself.
    """
    if None not in (config.epochs, config.eps_warmup_epochs, config.threshold_start_epochs):
        return config
    channels = data_info["image_shape"][0]
    model = architecture if isinstance(architecture, nn.Module) else \
        new_model(architecture, config, data_info["num_classes"], channels)
    start = auto_threshold_start(model, channels, data_info.get("name"))
    return config.resolved(data_info["n_train"], with_threshold_start=start)


def _threshold_start(model: nn.Module, config: TrainConfig, images: torch.Tensor) -> Callable[[], None]:
    """A function that sets filter 0 of the model's first convolution to a single-pixel threshold:
    :data:`~rvi.config.THRESHOLD_START_WEIGHT` on its centre, zero elsewhere, bias
    ``-(1 - eps) * weight``, so its ReLU opens where the centre pixel exceeds ``1 - eps``. Robust
    LeNets that meet the seed study's targets learn such a filter on their own (at about 0.69 for
    eps 0.3; ``benchmarks/results/recipe_sweep.md``, "First-layer thresholds")."""
    conv = _first_conv(model)
    if not threshold_start_fits(model, images.shape[1]):
        found = ("no Conv2d" if conv is None else
                 f"a first Conv2d with {conv.in_channels} input channels, kernel {conv.kernel_size}, "
                 f"bias {conv.bias is not None}")
        raise ValueError(f"config.threshold_start_epochs needs a model whose first Conv2d takes one "
                         f"channel, has a bias and an odd kernel, and one-channel images; got "
                         f"{found} and images of {images.shape[1]} channels")
    if not config.attack.eps < 1:
        raise ValueError(f"config.threshold_start_epochs needs an attack eps below 1, got "
                         f"{config.attack.eps}")
    centre = (0, *(size // 2 for size in conv.kernel_size))
    level = 1 - config.attack.eps

    def hold() -> None:
        with torch.no_grad():
            conv.weight[0].zero_()
            conv.weight[(0, *centre)] = THRESHOLD_START_WEIGHT
            conv.bias[0] = -level * THRESHOLD_START_WEIGHT

    return hold


def _attack_part(attack, config: TrainConfig, x, y, part: slice, n_step: int, image_shape):
    """Attack this rank's images ``x`` (``part`` of a global batch of ``n_step``), drawing PGD's
    random start as single-process training would: skip the noise of the images before ``part``
    and after it. Outside a process group ``part`` is the whole batch and nothing is skipped."""
    device = x.device
    before = part.start or 0
    after = n_step - (part.stop if part.stop is not None else n_step)
    skip_random_starts(config.attack, before, image_shape, device)
    if len(x):
        x = attack(x, y)  # switches to eval() for the attack and back
    skip_random_starts(config.attack, after, image_shape, device)
    return x


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def _needs_cuda() -> bool:
    """Whether the process group's backend (nccl) needs the model on a GPU."""
    import torch.distributed as dist

    return ddp.is_initialized() and dist.get_backend() == "nccl"


def training_summary(history: list, config: TrainConfig, n_images: int,
                     with_threshold_start: Optional[bool] = None) -> str:
    """One or two lines on a finished run: epochs, final loss and training accuracy, and a pointer
    to the recommended recipe when this one is far from it (too few epochs for its kind, or a
    constant schedule), since such runs end with visibly weaker models. The recommended epochs
    depend on ``with_threshold_start`` (:func:`auto_threshold_start`); without it, the fewer."""
    if with_threshold_start is not None:
        check_bool("with_threshold_start", with_threshold_start)
    if not history:
        return "no epoch trained"
    last = history[-1]
    on = "adversarial examples" if config.adversarial else "training images"
    text = (f"{len(history)} epochs, final loss {last['loss']:.4f}, accuracy on {on} "
            f"{last['accuracy']:.2%}")
    recommended = TrainConfig(adversarial=config.adversarial, attack=config.attack,
                              batch_size=config.batch_size)
    advised = recommended.epochs_for(n_images, with_threshold_start=with_threshold_start is not False)
    if len(history) < advised / 2 or (config.schedule == "constant" and config.optimizer == "adam"):
        text += (f"\nnote: this recipe is far from the recommended one ({recommended.label}: "
                 f"{'at least ' if with_threshold_start is None else ''}{advised} epochs on "
                 f"{n_images} images); expect a weaker model. TrainConfig() defaults give it.")
    return text


def _memory_format(model: nn.Module, images: torch.Tensor,
                   channels_last: Optional[bool]) -> torch.memory_format:
    """channels_last for image batches when asked, or (None) when the caller put the weights in
    that order or the model prefers it on the CPU: oneDNN's convolutions, above all the input
    gradient of a one-channel first layer, run several times faster in it."""
    if channels_last is None:
        channels_last = images.ndim == 4 and (has_channels_last_weights(model)
                                              or wants_channels_last(model))
    return torch.channels_last if channels_last else torch.contiguous_format


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _scheduler(optimizer, config: TrainConfig, total: int):
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total,
                                                   pct_start=config.lr_warmup_share)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return None


def save_checkpoint(path: PathLike, model: nn.Module, config: TrainConfig, history: list,
                    optimizer=None, scheduler=None, *, architecture: str,
                    dataset: Optional[dict] = None) -> None:
    """Write a checkpoint atomically (temporary file in the same folder, then rename).

    ``dataset`` (optional) describes the training data (name, split, fingerprint); it is stored
    as ``state["dataset"]`` (``None`` when not given).
    """
    if dataset is not None and not isinstance(dataset, dict):
        raise ValueError(f"dataset must be a dict or None, got {type(dataset).__name__}")
    state = {
        "format": CHECKPOINT_FORMAT,
        "architecture": architecture,
        "dataset": dataset,
        "config": config.to_dict(),
        "history": history,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
    }
    with atomic_write(path) as handle:
        torch.save(state, handle)


def load_checkpoint(path: PathLike, model: Optional[nn.Module] = None, *,
                    architecture: Optional[str] = None) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; load its weights into ``model``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an rvi checkpoint, or made for another architecture than ``architecture``
            (or than ``model``'s parameter shapes).
    """
    check_path("path", path)
    if model is not None:
        check_model(model)
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path must be a checkpoint file, got the folder {str(path)!r}")
    state = read_torch_file(path, f"checkpoint not found: {path}",
                            f"{path} is not a readable rvi checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an rvi checkpoint (format {CHECKPOINT_FORMAT})")
    state.setdefault("dataset", None)  # checkpoints written before datasets were recorded
    if architecture is not None and state["architecture"] != architecture:
        raise ValueError(f"{path} holds a {state['architecture']!r} model, not {architecture!r}")
    if model is not None:
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        saved = {k: tuple(v.shape) for k, v in state["model"].items()}
        if own != saved:
            raise ValueError(f"{path} holds a {state['architecture']!r} model whose layers do not "
                             f"match this {type(model).__name__} (saved {saved}, model {own})")
        model.load_state_dict(state["model"])
    return state


def load_model(path: PathLike, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Build the checkpoint's architecture (a name from :data:`rvi.models.architectures.MODELS`) and load it.

    Raises:
        ValueError: not an rvi checkpoint, or ``num_classes``/``in_channels`` do not match the
            saved layers.
    """
    state = load_checkpoint(path)
    model = build_model(state["architecture"], in_channels=in_channels, num_classes=num_classes)
    load_checkpoint(path, model)
    return model.eval()
