"""The ``rvi`` command: ``rvi train``, ``rvi evaluate``, ``rvi bench``, ``rvi compare``,
``rvi sweep`` and ``rvi report``.

Flags are generated from the config dataclasses, one per field, with the field's default and help
text; nested configs get a prefix (``--attack-eps``, ``--robust-epochs``). Only this module prints
(under torchrun, only rank 0: ``torchrun --nproc_per_node=N -m rvi train ...`` trains one model
data-parallel, ``rvi evaluate`` attacks a shard of the images on each rank).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import traceback
import typing
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import distributed as ddp
from ._core.catalog import DATASET_ATTACK, IMAGE_SHAPES
from ._core.io import file_lock, first_line, lock_path_of
from .attacks.accuracy import evaluate
from .config import (EVAL_ATTACK_HELP, AttackConfig, BenchmarkConfig, SweepConfig, TrainConfig,
                     dataset_attack, dataset_attack_help, deep_merge, parse_eval_attack)
from .data import DATASETS, image_hashes, load_dataset
from .errors import RviError
from .models.architectures import MODELS
from .models.cache import cached_model_path
from .models.train import (auto_threshold_start, load_checkpoint, load_model, new_model, resolve_recipe,
                           train_model, training_summary)
from .models.zoo import DATASETS as ZOO_DATASETS, THREAT_MODELS, load_robustbench
from .report.html import HTML_FILE
from .report.result import BenchmarkResult, check_out_folder
from .report.sweep_result import SWEEP_FILE, SweepResult
from .report.terminal import summary
from .studies.benchmark import run_benchmark
from .studies.compare import compare, load_images_file, load_user_model
from .studies.sweep import run_sweep
from .version import __version__


def _flag(prefix: str, name: str) -> str:
    return "--" + (prefix + name).replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser, cls, prefix: str = "",
                      defaults=None, skip: Sequence[str] = ()) -> None:
    """Add one flag per field of dataclass ``cls`` (recursing into nested config fields).

    Every flag's argparse default is ``SUPPRESS``: a flag that was not typed leaves no attribute,
    so :func:`_given_values` knows exactly which flags were given, however they were spelled
    (``--x v``, ``--x=v``, ``--no-x``). The help text shows the config's default.
    """
    defaults = defaults if defaults is not None else cls()
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        if spec.name in skip:
            continue
        default = getattr(defaults, spec.name)
        if dataclasses.is_dataclass(default):
            _add_config_flags(parser, type(default), f"{prefix}{spec.name}_", default)
            continue
        hint = hints[spec.name]
        if cls is AttackConfig and spec.name in ("eps", "alpha"):
            default = dataset_attack_help(spec.name)
        kwargs = {"default": argparse.SUPPRESS, "dest": prefix + spec.name,
                  "help": f"{spec.metadata.get('help', '')} (default: {default})".replace("%", "%%")}
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            kwargs["nargs"] = "+"
            kwargs["type"] = typing.get_args(hint)[0]
        else:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            kwargs["type"] = args[0] if args else hint
            if kwargs["type"] not in (int, float, str):
                raise TypeError(f"no flag type for {cls.__name__}.{spec.name}: {hint}")
        parser.add_argument(_flag(prefix, spec.name), **kwargs)


def _config_type(hint):
    """``X`` for a field typed ``Optional[X]`` (a default resolved per dataset), else ``hint``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def _given_values(cls, args: argparse.Namespace, prefix: str = "", skip: Sequence[str] = ()) -> dict:
    """The fields of ``cls`` whose flags were typed, as a nested dict (absent: not given)."""
    values: dict = {}
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        if spec.name in skip:
            continue
        hint = _config_type(hints[spec.name])
        if dataclasses.is_dataclass(hint):
            nested = _given_values(hint, args, f"{prefix}{spec.name}_")
            if nested:
                values[spec.name] = nested
        elif hasattr(args, prefix + spec.name):
            value = getattr(args, prefix + spec.name)
            values[spec.name] = tuple(value) if isinstance(value, list) else value
    return values


def _merged_config(cls, args: argparse.Namespace, *, prefix: str = "", skip: Sequence[str] = (),
                   base: Optional[dict] = None, file_path: Optional[str] = None,
                   fixed: Optional[dict] = None):
    """The one merge path: ``cls()`` defaults (or ``base``), then a JSON file's values (partial
    nested recipes are filled from the defaults), then the flags that were typed, then the
    fields the command sets itself (``fixed``, e.g. ``rvi compare --data``'s dataset); fields
    in ``skip`` keep their defaults."""
    if base is None:
        # fields whose default depends on the dataset are filled by cls.from_dict from the
        # dataset's defaults, around whatever part of them was given
        base = {k: v for k, v in cls().to_dict().items()
                if k not in getattr(cls, "DATASET_DEFAULTS", ())}
    merged = base
    if file_path is not None:
        merged = deep_merge(merged, _read_config_file(file_path))
    merged = deep_merge(merged, _given_values(cls, args, prefix, skip))
    merged = {k: v for k, v in merged.items() if k not in skip}
    return cls.from_dict({**merged, **(fixed or {})})


def _read_config_file(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--config {path!r} is not a readable JSON file: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"--config {path!r} must hold a JSON object of BenchmarkConfig fields, "
                         f"got {type(data).__name__}")
    return data


def _add_data_flags(parser: argparse.ArgumentParser, *, evaluate: bool = False) -> None:
    if evaluate:
        parser.add_argument("--dataset", default=None, choices=DATASETS,
                            help="dataset whose test split to use (default: the one the "
                                 "checkpoint records it was trained on)")
    else:
        parser.add_argument("--dataset", default="mnist-5k", choices=DATASETS,
                            help="dataset to use (default: mnist-5k, embedded, offline)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with MNIST/raw or FashionMNIST/raw IDX files or cifar-10-batches-py "
                             "(default: $RVI_DATA_DIR or ~/.cache/rvi/data)")
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                        help="let torchvision download a missing dataset; --no-download fails "
                             "if the files are missing (default: download)")
    if evaluate:
        parser.add_argument("--model", default=None, choices=MODELS,
                            help="architecture; must match the checkpoint's (default: the "
                                 "checkpoint's)")
    else:
        parser.add_argument("--model", default="lenet", choices=MODELS, help="architecture")


def _add_backend_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dist-backend", default="auto", choices=("auto", "gloo", "nccl"),
                        help="torch.distributed backend when launched by torchrun (auto: nccl "
                             "on CUDA GPUs, one per process, else gloo on the CPU)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvi", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"rvi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one model (natural or adversarial)",
                                allow_abbrev=False)
    _add_data_flags(train)
    train.add_argument("--out", default="rvi-models",
                       help="folder for the checkpoint; an existing one with the same recipe "
                            "resumes")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_backend_flag(train)
    _add_config_flags(train, TrainConfig)

    evaluate = commands.add_parser("evaluate", help="clean and robust accuracy of a checkpoint",
                                   allow_abbrev=False)
    _add_data_flags(evaluate, evaluate=True)
    evaluate.add_argument("checkpoint", help="a .pt file written by rvi train")
    evaluate.add_argument("--split", default="test", choices=("test", "train"),
                          help="which split of the dataset to score (default: test)")
    evaluate.add_argument("--allow-train-split", action="store_true",
                          help="evaluate even on images the model was trained on")
    evaluate.add_argument("--attacks", nargs="+", default=["fgsm", "pgd"],
                          help=f"{EVAL_ATTACK_HELP} (as rvi bench's --eval-attacks)")
    evaluate.add_argument("--n", type=int, default=None,
                          help="evaluate on the first N test images (default: all)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_backend_flag(evaluate)
    _add_config_flags(evaluate, AttackConfig, "attack_", skip=("name",))

    bench = commands.add_parser("bench", help="the 2x2 study: {natural, robust model} x "
                                              "{natural, adversarial input}", allow_abbrev=False)
    bench.add_argument("--config", default=None,
                       help="JSON file with BenchmarkConfig fields (nested recipes may be "
                            "partial: missing fields keep the benchmark's defaults); flags "
                            "given explicitly override it")
    bench.add_argument("--overwrite", action="store_true",
                       help="replace an existing result in --out")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.add_argument("--full", action="store_true", help=FULL_HELP)
    _add_backend_flag(bench)
    _add_config_flags(bench, BenchmarkConfig)
    _add_compare_parser(commands)
    _add_sweep_parser(commands)
    report = commands.add_parser("report", help="re-render the tables, figures and (for a "
                                                "benchmark result) the one-page report.html of a "
                                                "saved result from its records (no model needed)",
                                 allow_abbrev=False)
    report.add_argument("folder", help="a folder written by rvi bench, rvi sweep, "
                                       "BenchmarkResult.save or SweepResult.save")
    report.add_argument("--html", action="store_true",
                        help="print only the path of the re-rendered report.html instead of the "
                             "tables (report.html is written either way; benchmark results "
                             "only, not sweeps)")
    report.add_argument("--full", action="store_true", help=FULL_HELP + " (a sweep's tables "
                        "are always printed)")
    return parser


FULL_HELP = "print every table (always saved in tables.md) after the short summary"

#: BenchmarkConfig fields ``rvi compare`` has no flag for: training and the dataset by name
#: (the models and images come from --model and --data/--images).
COMPARE_SKIP = ("dataset", "data_dir", "download", "model", "natural", "robust", "cache_dir")


def _add_compare_parser(commands) -> None:
    compare = commands.add_parser(
        "compare", allow_abbrev=False,
        help="run the benchmark's attacks, maps, metrics and controls on models you bring")
    compare.add_argument("--model", dest="models", action="append", metavar="NAME=PATH",
                         help="a named model (repeat; two or more models in all, with "
                              "--robustbench's; the first model given is the reference unless "
                              "--reference): an rvi "
                              "checkpoint, a TorchScript file, or a torch.save'd module with "
                              "--trust-pickle. Models take inputs in [0, 1] and return logits "
                              "(normalization inside the model)")
    compare.add_argument("--robustbench", dest="models", action="append", metavar="NAME",
                         type=lambda name: ("robustbench", name),
                         help="a RobustBench model-zoo model, named NAME in the results (repeat; "
                              "needs pip install \"rvi[robustbench]\"; its checkpoint is read from "
                              "--robustbench-dir, else downloaded there)")
    compare.add_argument("--robustbench-dataset", default="cifar10", choices=ZOO_DATASETS,
                         help="the zoo the --robustbench models come from (default: cifar10)")
    compare.add_argument("--robustbench-threat-model", default="Linf", choices=THREAT_MODELS,
                         help="their threat model (default: Linf)")
    compare.add_argument("--robustbench-dir", default=None, metavar="DIR",
                         help="folder with RobustBench's DATASET/THREAT_MODEL/NAME.pt checkpoints "
                              "(default: ~/.cache/rvi/robustbench)")
    compare.add_argument("--reference", default=None,
                         help="the model the others are compared with (default: the first)")
    source = compare.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", choices=DATASETS, help="use this dataset's test split")
    source.add_argument("--images", metavar="FILE.pt",
                        help="a torch.save'd dict {'images': (N, C, H, W) float in [0, 1], "
                             "'labels': (N,) int64} (read with weights_only=True)")
    compare.add_argument("--dataset", default=None, choices=DATASETS,
                         help="with --images: the dataset whose defaults (attack eps and step) "
                              "apply (default: inferred from the image shape where that is "
                              "unambiguous: 3x32x32 is cifar10; 1x28x28 fits MNIST and "
                              "Fashion-MNIST, whose eps differ)")
    compare.add_argument("--data-dir", default=None, help="folder of the --data dataset's files")
    compare.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                         help="let torchvision download a missing --data dataset")
    compare.add_argument("--num-classes", type=int, default=None,
                         help="number of classes K (default: the --data dataset's, else the "
                              "first model's output width)")
    compare.add_argument("--trust-pickle", action="store_true",
                         help="also load models saved whole with torch.save(model): this uses "
                              "torch.load(weights_only=False), which runs code stored in the "
                              "file; give it only for files you trust")
    compare.add_argument("--config", default=None,
                         help="JSON file with BenchmarkConfig fields; flags override it")
    _add_backend_flag(compare)
    compare.add_argument("--overwrite", action="store_true",
                         help="replace an existing result in --out")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.add_argument("--full", action="store_true", help=FULL_HELP)
    _add_config_flags(compare, BenchmarkConfig, skip=COMPARE_SKIP)


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.data is not None:
        if args.dataset is not None:
            raise ValueError(f"--dataset goes with --images; --data {args.data} names the "
                             f"dataset already, got --dataset {args.dataset}")
        data = load_dataset(args.data, args.data_dir, download=args.download)
        images, labels, name = data.test_images, data.test_labels, f"{data.name} test split"
        fixed = {"dataset": args.data, "data_dir": args.data_dir, "download": args.download}
        num_classes = args.num_classes or data.num_classes
    else:
        images, labels = load_images_file(args.images)
        name, num_classes = f"images from {args.images}", args.num_classes
        dataset = _images_dataset(args, tuple(images.shape[1:]))
        fixed = {} if dataset is None else {"dataset": dataset}
    config = _merged_config(BenchmarkConfig, args, skip=COMPARE_SKIP, file_path=args.config,
                            fixed=fixed)
    paths, zoo = {}, set()
    for spec in args.models or ():
        if isinstance(spec, tuple):  # --robustbench NAME: the zoo's name, and the zoo as source
            spec = model_name = spec[1]
            path = f"robustbench:{args.robustbench_dataset}/{args.robustbench_threat_model}/{spec}"
            zoo.add(spec)
        else:
            model_name, _, path = spec.partition("=")
        if not model_name or not path or model_name in paths:
            raise ValueError(f"--model must be NAME=PATH and --robustbench NAME, with distinct "
                             f"names, got {spec!r}")
        paths[model_name] = path
    if len(paths) < 2:
        raise ValueError(f"rvi compare needs two or more models (--model NAME=PATH, --robustbench "
                         f"NAME), got {len(paths)}")
    with _out_folder(config.out_dir, args.overwrite):  # checked and locked before the work
        models = {n: (_robustbench_model(n, args) if n in zoo else
                      load_user_model(p, trust_pickle=args.trust_pickle, num_classes=num_classes,
                                      in_channels=images.shape[1])).to(config.device)
                  for n, p in paths.items()}
        result = compare(models, images, labels, config, reference=args.reference,
                         num_classes=num_classes, sources=paths, data_name=name,
                         progress=not args.quiet)  # None on ranks other than 0 under torchrun
        _save_and_print(result, config.out_dir, args.overwrite, args.full)
    return 0


def _images_dataset(args: argparse.Namespace, shape: tuple) -> Optional[str]:
    """The dataset whose defaults ``--images`` of ``shape`` (C, H, W) get: ``--dataset``, else
    the datasets of that shape when they share one default attack; None when the attack's eps
    and step are both given (no default is used)."""
    if args.dataset is not None:
        return args.dataset
    fits = [name for name, known in IMAGE_SHAPES.items() if known == shape]
    if len({DATASET_ATTACK[name] for name in fits}) == 1:
        return fits[0]
    if hasattr(args, "attack_eps") and hasattr(args, "attack_alpha"):
        return None
    size = "x".join(map(str, shape))
    if fits:
        options = "; ".join(f"{n}: eps {DATASET_ATTACK[n][0]:.3g}" for n in fits)
        raise ValueError(f"--images holds {size} images, which fit datasets with different "
                         f"default attacks ({options}); pass --dataset NAME to choose, or "
                         "--attack-eps and --attack-alpha")
    raise ValueError(f"--images holds {size} images, the shape of no dataset rvi knows "
                     f"({', '.join(IMAGE_SHAPES)}), so no default attack fits them; pass "
                     "--attack-eps and --attack-alpha (or --dataset NAME for that dataset's)")


@contextlib.contextmanager
def _out_folder(folder: str, overwrite: bool):
    """Check ``--out-dir`` and hold its lock for the whole run (rank 0 only under torchrun), so
    a second run into the same folder fails before it computes anything."""
    if not ddp.is_main():
        yield
        return
    check_out_folder(folder, overwrite)  # a bad path is named before a lock is made for it
    with file_lock(lock_path_of(folder), wait=False, what=f"out folder {folder!r}"):
        check_out_folder(folder, overwrite)  # again: another run may have saved meanwhile
        yield


def _robustbench_model(name: str, args: argparse.Namespace):
    """``--robustbench NAME``'s model; robustbench not installed is an error message, not a crash."""
    try:
        return load_robustbench(name, args.robustbench_dataset, args.robustbench_threat_model,
                                args.robustbench_dir)
    except ImportError as err:
        raise ValueError(f"--robustbench {name}: {err}") from err


def _save_and_print(result, out_dir, overwrite: bool, full: bool) -> None:
    """Rank 0 saves ``result`` (atomically; the other ranks, which hold None, wait) and prints
    its summary (and, with ``full``, every table)."""
    folder = ddp.on_main(lambda: result.save(out_dir, overwrite=overwrite))
    if ddp.is_main():
        _print_result(result, folder, full)


def _print_result(result, folder: Path, full: bool) -> None:
    print(summary(result, folder), end="")
    if full:
        print("\n" + (folder / "tables.md").read_text(), end="")  # as saved, not rendered twice


def _cmd_report(args: argparse.Namespace) -> int:
    if (Path(args.folder) / SWEEP_FILE).is_file():
        if args.html:
            raise ValueError(f"--html: {args.folder} is a sweep, which has no HTML report")
        sweep = SweepResult.load(args.folder)
        print(sweep.to_markdown())
        print(f"\ntables and figures re-rendered in {sweep.save(args.folder)}")
        return 0
    result = BenchmarkResult.load(args.folder)
    folder = result.save(args.folder, overwrite=True, records=False)
    if args.html:
        print(folder / HTML_FILE)
        return 0
    _print_result(result, folder, args.full)
    print(f"\ntables, figures and {HTML_FILE} re-rendered in {folder}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    config = _train_config(args)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out must be a folder, got the file {args.out!r}")
    data = load_dataset(args.dataset, args.data_dir, download=args.download)
    info = data.info()
    model = new_model(args.model, config, data.num_classes, data.image_shape[0]).to(ddp.device())
    recipe = resolve_recipe(config, info, model)
    path = cached_model_path(args.out, info, args.model, recipe)
    processes = (f"; {ddp.world_size()} processes ({ddp.world_size() * torch.get_num_threads()} "
                 f"threads in all), backend {torch.distributed.get_backend()}"
                 if ddp.is_distributed() else "")
    _main_print(f"training {args.model} on {data.name}: {recipe.label} ("
                f"{torch.get_num_threads()} torch threads{processes})\ncheckpoint: {path}")
    history = train_model(model, data.train_images, data.train_labels, recipe,
                          checkpoint_path=path, architecture=args.model, quiet=args.quiet,
                          dataset_info=info)
    auto_start = auto_threshold_start(model, data.image_shape[0], data.name)  # for the advice only
    _main_print(f"done: {training_summary(history, config, len(data.train_images), auto_start)}\n{path}")
    return 0


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """``rvi train``'s recipe: the flags given, on a default whose attack is the dataset's."""
    return _merged_config(TrainConfig, args,
                          base=TrainConfig(attack=dataset_attack(args.dataset)).to_dict())


def _main_print(*args, **kwargs) -> None:
    """print() on rank 0 only (every process of a torchrun job runs this module)."""
    if ddp.is_main():
        print(*args, **kwargs)


def _evaluation_data(args: argparse.Namespace, state: dict):
    """The dataset ``rvi evaluate`` scores, and the images/labels of the chosen split; refuses
    images the checkpoint was trained on unless ``--allow-train-split``."""

    recorded = state.get("dataset")
    if args.model is not None and args.model != state["architecture"]:
        raise ValueError(f"--model {args.model!r} differs from the checkpoint's architecture "
                         f"{state['architecture']!r}; leave --model out")
    if recorded is None and args.dataset is None:
        raise ValueError(f"checkpoint {args.checkpoint!r} records no dataset (written by an older "
                         "rvi); pass --dataset to say which test split to use")
    name = args.dataset or recorded["name"]
    data = _load_like(name, recorded, args.data_dir, args.download)
    images, labels = ((data.test_images, data.test_labels) if args.split == "test"
                      else (data.train_images, data.train_labels))
    if recorded is None or args.allow_train_split:
        return data, images, labels
    if data.fingerprint() == recorded["fingerprint"]:
        if args.split == "train":
            raise ValueError(f"--split train is the split checkpoint {args.checkpoint!r} was "
                             f"trained on ({name}); pass --allow-train-split to evaluate anyway")
        return data, images, labels
    trained_on = data if name == recorded["name"] else None
    if trained_on is None:
        try:
            trained_on = _load_like(recorded["name"], recorded, args.data_dir, False)
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"cannot check that {name} {args.split} images are not among the "
                             f"{recorded['name']} images the checkpoint was trained on ({err}); "
                             "pass --allow-train-split to evaluate anyway") from err
    if trained_on.fingerprint() != recorded["fingerprint"]:
        raise ValueError(f"the {recorded['name']} training data the checkpoint records "
                         "(fingerprint) differs from the one on disk; pass --dataset and "
                         "--allow-train-split to evaluate anyway")
    shared = len(image_hashes(images) & image_hashes(trained_on.train_images))
    if shared:
        raise ValueError(f"{shared} of the {len(images)} {name} {args.split} images are among the "
                         f"{recorded['name']} training images of checkpoint {args.checkpoint!r}; "
                         "pass --allow-train-split to evaluate anyway")
    return data, images, labels


def _load_like(name: str, recorded: Optional[dict], data_dir, download: bool):
    """``load_dataset(name)``; ``synthetic`` at the size the checkpoint records, if it does."""
    split = (recorded or {}).get("split")
    if name == "synthetic" and (recorded or {}).get("name") == "synthetic" and isinstance(split, dict):
        return load_dataset(name, data_dir, download=download,
                            synthetic_size=(split["n_train"], split["n_test"]))
    return load_dataset(name, data_dir, download=download)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    state = load_checkpoint(args.checkpoint)
    data, images, labels = _evaluation_data(args, state)
    model = load_model(args.checkpoint, data.num_classes, data.image_shape[0]).to(ddp.device())
    base = _merged_config(AttackConfig, args, prefix="attack_", skip=("name",),
                          base=dataset_attack(data.name).to_dict())
    try:
        attacks = [parse_eval_attack(spec, base, data.name) for spec in args.attacks]
    except ValueError as err:
        raise ValueError(f"--attacks: {err}") from err
    result = evaluate(model, images, labels, attacks, n=args.n, distributed=ddp.is_distributed())
    if args.json:
        _main_print(json.dumps(result, indent=2))
    else:
        _main_print(f"accuracy on {result.pop('n')} {data.name} {args.split} images")
        for key, value in result.items():
            _main_print(f"  {key:<38} {value:7.2%}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    config = _merged_config(BenchmarkConfig, args, file_path=args.config)
    with _out_folder(config.out_dir, args.overwrite):  # before hours of work, not after
        result = run_benchmark(config, progress=not args.quiet)  # None on ranks > 0 (torchrun)
        _save_and_print(result, config.out_dir, args.overwrite, args.full)
    return 0


def _add_sweep_parser(commands) -> None:
    sweep = commands.add_parser("sweep", help="models over a grid of training eps x seeds: "
                                              "robust accuracy, every metric, rank correlations",
                                allow_abbrev=False)
    sweep.add_argument("--config", default=None,
                       help="JSON file with SweepConfig fields; flags given explicitly override it")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(sweep, SweepConfig)


def _cmd_sweep(args: argparse.Namespace) -> int:
    config = _merged_config(SweepConfig, args, file_path=args.config)
    result = run_sweep(config, progress=not args.quiet)
    folder = result.save()
    print(result.to_markdown())
    print(f"\njob records, tables and figures in {folder}")
    for failure in result.failed:
        print(f"rvi sweep: job failed twice: {failure['error']}; job: {failure['job']}",
              file=sys.stderr)
    return 1 if result.failed else 0


#: What the command line turns into one line and exit code 2: errors a user's input, files,
#: environment or a missing optional package cause (rvi's own classes, :mod:`rvi.errors`,
#: subclass these). Anything else is a bug in rvi: its traceback is shown, exit code 1.
USER_ERRORS = (ValueError, OSError, ImportError)
#: torch's out-of-memory error (``torch.OutOfMemoryError`` from torch 2.5, CUDA's before).
OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
#: Exit codes: a user's error, a bug in rvi, and an interrupted run (128 + SIGINT).
EXIT_USER, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 130


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning(args.command)
        try:
            if args.command in ("report", "sweep"):  # a sweep's engines run their own processes
                return {"report": _cmd_report, "sweep": _cmd_sweep}[args.command](args)
            commands = {"train": _cmd_train, "evaluate": _cmd_evaluate, "compare": _cmd_compare,
                        "bench": _cmd_bench}
            # joins torchrun's process group (a no-op in a plain process)
            with ddp.process_group(args.dist_backend):
                return commands[args.command](args)
        except KeyboardInterrupt:
            print(f"rvi {args.command}: interrupted; trained epochs stay in the model cache and "
                  "resume on the next run", file=sys.stderr)
            return EXIT_INTERRUPTED
        except OUT_OF_MEMORY as err:
            print(f"rvi {args.command}: error: out of memory ({first_line(err)}); lower "
                  "--batch-size or use a device with more memory", file=sys.stderr)
            return EXIT_USER
        except USER_ERRORS as err:
            print(f"rvi {args.command}: error: {_describe_error(err)}", file=sys.stderr)
            return EXIT_USER
        except Exception:
            traceback.print_exc()
            print(f"rvi {args.command}: internal error: this is a bug in rvi {__version__}, not "
                  "in your input; please report it with the traceback above", file=sys.stderr)
            return EXIT_BUG


def _describe_error(err: BaseException) -> str:
    """One line for a user's error: rvi's own message whole; an error the OS or another package
    raised gets its class and what to check."""
    if isinstance(err, (RviError, ValueError)) or (isinstance(err, OSError) and not err.errno):
        return " ".join(str(err).split())
    if isinstance(err, ImportError):
        return (f"{type(err).__name__}: {first_line(err)}; install the missing package (rvi's "
                "optional ones: pip install \"rvi[ray,quantus,robustbench]\")")
    return (f"{type(err).__name__}: {first_line(err)} (check the path, its permissions and the "
            "free space)")


def _one_line_warning(command: str):
    """``warnings.showwarning`` for the command line: ``rvi CMD: warning: message``."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"rvi {command}: warning: {message}", file=file or sys.stderr)
    return show


if __name__ == "__main__":
    sys.exit(main())
