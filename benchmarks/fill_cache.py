"""Train the cached models of a sweep in a pool of worker processes, on any device.

Each job is one (dataset, architecture, training eps, seed) point with the recipe of
:func:`rvi.sweep.sweep_recipe`; it goes through :func:`rvi.cache.get_trained_model`, so a model
already in ``--cache-dir`` is loaded, an interrupted one resumes from its last epoch, and whatever
``rvi sweep`` / ``rvi bench`` later asks for under the same recipe is found there. Several
processes share one GPU well here because a LeNet step is launch-bound, not compute-bound.

    python benchmarks/fill_cache.py --dataset mnist --model lenet --eps 0.1 0.2 --seeds 0 1 2 \\
        --device cuda --workers 8
"""

import json
import multiprocessing
import time

import torch

import rvi
from rvi.cache import get_trained_model
from rvi.sweep import EPS_GRIDS, sweep_recipe

from _common import parser


def train_one(job: dict) -> dict:
    """Train (or load) one sweep point; returns a JSON-able summary."""
    torch.set_num_threads(job["threads"])
    data = rvi.load_dataset(job["dataset"], job["data_dir"], download=False)
    config = sweep_recipe(job["eps"], job["seed"])
    started = time.perf_counter()
    _, history, path = get_trained_model(data, job["model"], config, job["cache_dir"],
                                         device=job["device"], quiet=True)
    return {**{k: job[k] for k in ("dataset", "model", "eps", "seed")}, "path": path.name,
            "seconds": round(time.perf_counter() - started, 1), "epochs": len(history),
            "final_train_accuracy": history[-1]["accuracy"]}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="lenet")
    p.add_argument("--eps", type=float, nargs="+", default=None,
                   help="training eps values (default: the dataset's grid in rvi.sweep.EPS_GRIDS)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=1, help="processes training at once")
    args = p.parse_args()
    grid = args.eps if args.eps is not None else EPS_GRIDS[args.dataset]
    # adversarial jobs first: they are the long ones
    jobs = [{"dataset": args.dataset, "model": args.model, "eps": eps, "seed": seed,
             "data_dir": args.data_dir, "cache_dir": args.cache_dir, "device": args.device,
             "threads": args.threads}
            for eps in sorted(grid, reverse=True) for seed in args.seeds]
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    with context.Pool(args.workers) as pool:
        for summary in pool.imap_unordered(train_one, jobs):
            print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
