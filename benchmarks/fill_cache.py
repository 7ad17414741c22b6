"""Train the cached models of a sweep in a pool of worker processes, on any device.

Each job is one (dataset, architecture, training eps, seed) point with the recipe of
:func:`rvi.studies.sweep.sweep_recipe`; it goes through :func:`rvi.models.cache.get_trained_model`, so a model
already in ``--cache-dir`` is loaded, an interrupted one resumes from its last epoch, and whatever
``rvi sweep`` / ``rvi bench`` later asks for under the same recipe is found there. Several
processes share one GPU well here because a LeNet step is launch-bound, not compute-bound.

    python benchmarks/fill_cache.py --dataset mnist --model lenet --eps 0.1 0.2 --seeds 0 1 2 \\
        --device cuda --workers 8
"""

import json
import time

import torch

import rvi
from rvi.models.cache import default_cache_dir, get_trained_model
from rvi.studies.engines import run_jobs
from rvi.studies.sweep import EPS_GRIDS, make_jobs, sweep_recipe

from _common import parser


def train_one(job) -> dict:
    """Train (or load) one sweep point (an :class:`rvi.studies.sweep_job.SweepJob`); returns a JSON-able
    summary."""
    torch.set_num_threads(job.threads)
    data = rvi.load_dataset(job.dataset, job.data_dir, download=False)
    config = sweep_recipe(job.eps, job.seed)
    started = time.perf_counter()
    _, history, path = get_trained_model(data, job.model, config, job.cache_dir,
                                         device=job.device, quiet=True)
    return {"dataset": job.dataset, "model": job.model, "eps": job.eps, "seed": job.seed,
            "path": path.name, "seconds": round(time.perf_counter() - started, 1),
            "epochs": len(history), "final_train_accuracy": history[-1]["accuracy"]}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="lenet")
    p.add_argument("--eps", type=float, nargs="+", default=None,
                   help="training eps values (default: the dataset's grid in rvi.studies.sweep.EPS_GRIDS)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=1, help="processes training at once")
    args = p.parse_args()
    grid = args.eps if args.eps is not None else EPS_GRIDS[args.dataset]
    config = rvi.SweepConfig(dataset=args.dataset, model=args.model, eps=tuple(grid),
                             seeds=tuple(args.seeds), data_dir=args.data_dir,
                             cache_dir=str(args.cache_dir or default_cache_dir()),
                             device=args.device, workers=args.workers, threads=args.threads)
    # rvi's own engine (a spawn pool, or in-process for one worker), adversarial jobs first
    failed = run_jobs(make_jobs(config), train_one, config,
                      lambda job, summary: print(json.dumps(summary), flush=True))
    for failure in failed:
        print(f"failed: eps {failure['job'].eps}, seed {failure['job'].seed}: {failure['error']}")


if __name__ == "__main__":
    main()
