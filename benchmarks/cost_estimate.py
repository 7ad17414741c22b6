"""How close rvi's time estimate (rvi.scoring.cost) lands to the measured stage times.

Two runs, each printed as estimate / measured / ratio per stage:

- ``bench``: ``rvi bench``'s default study on mnist-5k (README's main command), models from the
  cache when they are there (then training is neither predicted nor measured);
- ``zoo``: ``rvi compare`` of two RobustBench CIFAR-10 WideResNet-28-10s (the architectures of
  ``Standard`` and ``Carmon2019Unlabeled``, seeded random weights saved in RobustBench's
  ``cifar10/Linf/NAME.pt`` layout: CIFAR-10 and the real checkpoints cannot be downloaded here)
  on ``--zoo-images`` synthetic 3x32x32 images, default metrics and controls
  (``--randomization-steps`` picks the steps; ``layers`` is rvi 0.12's per-module test).

Needs robustbench for ``zoo`` (pip install "rvi[robustbench]"). Usage::

    python benchmarks/cost_estimate.py bench zoo --out benchmarks/results/cost_estimate.md
    python benchmarks/cost_estimate.py zoo --zoo-images 2 --randomization-steps layers \
        --metrics cosine foreground_mass --randomization-draws 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_text  # noqa: E402

import rvi  # noqa: E402
from rvi.config import BenchmarkConfig  # noqa: E402
from rvi.scoring.controls import randomization_steps  # noqa: E402
from rvi.scoring.cost import STAGES  # noqa: E402
from rvi.models.zoo import import_robustbench, load_robustbench  # noqa: E402

ZOO_MODELS = ("Standard", "Carmon2019Unlabeled")


def stage_table(title: str, result, wall: float) -> list:
    """Markdown rows: stage, estimate, measured, measured / estimate."""
    measured = {}
    for key, value in result.meta["timings_seconds"].items():
        stage = key.split("/")[0]
        if stage in STAGES:
            measured[stage] = measured.get(stage, 0.0) + value
    estimate = result.meta["estimate_seconds"]
    rows = [f"### {title}", "", "| stage | estimate (s) | measured (s) | measured / estimate |",
            "| --- | ---: | ---: | ---: |"]
    for stage in STAGES:
        if estimate.get(stage, 0) or measured.get(stage, 0) > 0.5:
            ratio = measured.get(stage, 0) / estimate[stage] if estimate.get(stage) else float("nan")
            rows.append(f"| {stage} | {estimate.get(stage, 0):.1f} | {measured.get(stage, 0):.1f} | "
                        f"{ratio:.2f} |")
    total_estimate, total_measured = sum(estimate.values()), sum(measured.values())
    rows += [f"| **stages** | {total_estimate:.1f} | {total_measured:.1f} | "
             f"{total_measured / total_estimate:.2f} |", "",
             f"Wall time of the call, loading and the estimate itself included: {wall:.1f} s.", ""]
    return rows


def run_bench(args) -> list:
    config = BenchmarkConfig(**({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    tick = time.perf_counter()
    result = rvi.run_benchmark(config, progress=True)
    wall = time.perf_counter() - tick
    trained = "cached models" if result.meta["timings_seconds"].get("train/seed0", 0) < 5 \
        else "models trained in this run"
    return stage_table(f"`rvi bench` default, mnist-5k, {result.meta['n_test']} test images "
                       f"({trained})", result, wall)


def run_zoo(args) -> list:
    robustbench = import_robustbench()
    enums = robustbench.model_zoo.enums
    entry = robustbench.model_zoo.model_dicts[enums.BenchmarkDataset.cifar_10][enums.ThreatModel.Linf]
    models = {}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "cifar10" / "Linf").mkdir(parents=True)
        for seed, name in enumerate(ZOO_MODELS):
            torch.manual_seed(seed)
            torch.save({"state_dict": entry[name]["model"]().state_dict()},
                       Path(folder) / "cifar10" / "Linf" / f"{name}.pt")
            models[name] = load_robustbench(name, model_dir=folder)
    images = torch.rand(args.zoo_images, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(args.zoo_images) % 10
    settings = {"metrics": tuple(args.metrics)} if args.metrics else {}
    if args.randomization_draws:
        settings["randomization_draws"] = args.randomization_draws
    config = BenchmarkConfig(dataset="cifar10", randomization_steps=args.randomization_steps,
                             **settings)
    steps = {name: len(randomization_steps(model, images[:1], args.randomization_steps))
             for name, model in models.items()}
    tick = time.perf_counter()
    result = rvi.compare(models, images, labels, config, progress=True)
    wall = time.perf_counter() - tick
    return stage_table(f"`rvi compare`, two WideResNet-28-10 ({', '.join(ZOO_MODELS)}), "
                       f"{args.zoo_images} synthetic images, randomization steps "
                       f"{args.randomization_steps} ({', '.join(map(str, steps.values()))} steps), "
                       f"metrics {'default' if not args.metrics else ', '.join(args.metrics)}, "
                       f"{config.randomization_draws} randomization draws",
                       result, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", choices=("bench", "zoo"))
    parser.add_argument("--zoo-images", type=int, default=8)
    parser.add_argument("--randomization-steps", default="auto", choices=("auto", "layers", "blocks"))
    parser.add_argument("--metrics", nargs="+", default=None, help="the zoo run's metrics "
                        "(default: the benchmark's)")
    parser.add_argument("--randomization-draws", type=int, default=None,
                        help="the zoo run's re-initializations (default: the benchmark's)")
    parser.add_argument("--cache-dir", default=None, help="model cache of the bench run")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="also write the Markdown to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lines = ["# rvi's time estimate against the measured stage times", "",
             f"Machine: {machine('cpu')}.", "",
             "`python benchmarks/cost_estimate.py " + " ".join(sys.argv[1:]) + "`", ""]
    for run in args.runs:
        lines += run_bench(args) if run == "bench" else run_zoo(args)
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_text(Path(args.out), text + "\n")


if __name__ == "__main__":
    main()
