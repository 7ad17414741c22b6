"""The ``rvi`` command: ``rvi train``, ``rvi evaluate``, ``rvi bench`` and ``rvi report``.

Flags are generated from the config dataclasses, one per field, with the field's default and help
text; nested configs get a prefix (``--attack-eps``, ``--robust-epochs``). Only this module prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Optional, Sequence

from .config import AttackConfig, TrainConfig


def _flag(prefix: str, name: str) -> str:
    return "--" + (prefix + name).replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser, cls, prefix: str = "",
                      defaults=None, skip: Sequence[str] = ()) -> None:
    """Add one flag per field of dataclass ``cls`` (recursing into nested config fields)."""
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
        kwargs = {"default": default, "dest": prefix + spec.name,
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


def _config_from_args(cls, args: argparse.Namespace, prefix: str = "", defaults=None,
                      skip: Sequence[str] = ()):
    defaults = defaults if defaults is not None else cls()
    values = {}
    for spec in dataclasses.fields(cls):
        if spec.name in skip:
            continue
        default = getattr(defaults, spec.name)
        if dataclasses.is_dataclass(default):
            values[spec.name] = _config_from_args(type(default), args, f"{prefix}{spec.name}_",
                                                  default)
        else:
            value = getattr(args, prefix + spec.name)
            values[spec.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    from .data import DATASETS
    from .models import MODELS

    parser.add_argument("--dataset", default="mnist-5k", choices=DATASETS,
                        help="dataset to use (default: mnist-5k, embedded, offline)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with MNIST/raw or FashionMNIST/raw IDX files "
                             "(default: $RVI_DATA_DIR or ~/.cache/rvi/data)")
    parser.add_argument("--no-download", action="store_true",
                        help="never download; fail if the dataset files are missing")
    parser.add_argument("--model", default="lenet", choices=MODELS, help="architecture")


def _build_parser() -> argparse.ArgumentParser:
    from .benchmark import BenchmarkConfig

    parser = argparse.ArgumentParser(prog="rvi", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one model (natural or adversarial)")
    _add_data_flags(train)
    train.add_argument("--out", default="rvi-models",
                       help="folder for the checkpoint; an existing one with the same recipe "
                            "resumes")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(train, TrainConfig)

    evaluate = commands.add_parser("evaluate", help="clean and robust accuracy of a checkpoint")
    _add_data_flags(evaluate)
    evaluate.add_argument("checkpoint", help="a .pt file written by rvi train")
    evaluate.add_argument("--attacks", nargs="+", default=["fgsm", "pgd"],
                          choices=["fgsm", "pgd", "autoattack"], help="attacks to run")
    evaluate.add_argument("--n", type=int, default=None,
                          help="evaluate on the first N test images (default: all)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_config_flags(evaluate, AttackConfig, "attack_", skip=("name",))

    bench = commands.add_parser("bench", help="the 2x2 study: {natural, robust model} x "
                                              "{natural, adversarial input}")
    bench.add_argument("--config", default=None,
                       help="JSON file with BenchmarkConfig fields; flags given explicitly "
                            "override it")
    bench.add_argument("--overwrite", action="store_true",
                       help="replace an existing result in --out")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_flags(bench, BenchmarkConfig)
    report = commands.add_parser("report", help="re-render the tables and figures of a saved "
                                                "result from its records (no model needed)")
    report.add_argument("folder", help="a folder written by rvi bench or BenchmarkResult.save")
    return parser


def _cmd_report(args: argparse.Namespace) -> int:
    from .result import BenchmarkResult

    result = BenchmarkResult.load(args.folder)
    folder = result.save(args.folder, overwrite=True)
    print(result.to_markdown())
    print(f"\ntables and figures re-rendered in {folder}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .cache import cached_model_path
    from .data import load_dataset
    from .train import new_model, train_model

    config = _config_from_args(TrainConfig, args)
    data = load_dataset(args.dataset, args.data_dir, download=not args.no_download)
    path = cached_model_path(args.out, data.name, args.model, config)
    model = new_model(args.model, config, data.num_classes, data.image_shape[0])
    print(f"training {args.model} on {data.name}: {config.label}\ncheckpoint: {path}")
    history = train_model(model, data.train_images, data.train_labels, config,
                          checkpoint_path=path, architecture=args.model, quiet=args.quiet)
    last = history[-1]
    print(f"done: epoch {last['epoch']}, loss {last['loss']:.4f}, "
          f"train accuracy {last['accuracy']:.2%}\n{path}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .evaluate import evaluate
    from .train import load_model

    data = load_dataset(args.dataset, args.data_dir, download=not args.no_download)
    model = load_model(args.checkpoint, data.num_classes, data.image_shape[0])
    base = _config_from_args(AttackConfig, args, "attack_", skip=("name",))
    attacks = [dataclasses.replace(base, name=name) for name in args.attacks]
    result = evaluate(model, data.test_images, data.test_labels, attacks, n=args.n)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"accuracy on {result.pop('n')} test images")
        for key, value in result.items():
            print(f"  {key:<38} {value:7.2%}")
    return 0


def _cmd_bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .benchmark import BenchmarkConfig, run_benchmark

    config = _config_from_args(BenchmarkConfig, args)
    if args.config:
        config = _merge_config_file(args.config, config, argv)
    result = run_benchmark(config, progress=not args.quiet)
    folder = result.save(config.out_dir, overwrite=args.overwrite)
    print(result.to_markdown())
    print(f"\nresults, records and figures saved to {folder}")
    return 0


def _merge_config_file(path: str, from_flags, argv: Sequence[str]):
    """File values win over defaults; flags typed on the command line win over the file."""
    from .benchmark import BenchmarkConfig

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--config {path!r} is not a readable JSON file: {err}") from err
    typed = {arg.split("=")[0][2:].replace("-", "_") for arg in argv if arg.startswith("--")}
    merged = BenchmarkConfig.from_dict(data).to_dict()

    def overlay(target: dict, flags: dict, prefix: str) -> None:
        for key, value in flags.items():
            if isinstance(value, dict):
                overlay(target[key], value, f"{prefix}{key}_")
            elif prefix + key in typed:
                target[key] = value

    overlay(merged, from_flags.to_dict(), "")
    return BenchmarkConfig.from_dict(merged)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "evaluate":
            return _cmd_evaluate(args)
        if args.command == "report":
            return _cmd_report(args)
        return _cmd_bench(args, argv)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"rvi {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
