"""Helpers shared by the benchmark scripts: argument defaults, machine description, writing."""

import argparse
import os
import platform
import time
from pathlib import Path

import torch

import rvi
from rvi._core.io import atomic_write

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-dir", default=str(DEFAULT_DATA),
                   help="folder holding MNIST/raw (default: ../shared/data beside the repo)")
    p.add_argument("--cache-dir", default=str(HERE / "cache"),
                   help="trained-model cache shared by the benchmark scripts")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device")
    return p


def machine(device: str) -> str:
    env = rvi.studies.benchmark.environment(device)
    return (f"{platform.node() or 'host'}: {env['processor']}, {os.cpu_count()} CPUs, "
            f"{torch.get_num_threads()} torch threads, device {device}; Python {env['python']}, "
            f"torch {env['torch']}, torchattacks {env['torchattacks']}, captum {env['captum']}")


def write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def run_and_save(config, out: str, overwrite: bool, device: str) -> None:
    """Run the benchmark ``config``, save it to ``out`` and print its tables, the machine and the
    wall time."""
    started = time.perf_counter()
    result = rvi.run_benchmark(config, progress=True)
    folder = result.save(out, overwrite=overwrite)
    print(result.to_markdown())
    print(machine(device))
    print(f"saved to {folder} in {time.perf_counter() - started:.0f} s")
