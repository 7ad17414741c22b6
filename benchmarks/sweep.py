"""The robustness-interpretability sweep: LeNet over the dataset's training-eps grid, 3 seeds.

Writes ``benchmarks/results/sweep_<dataset>/`` (job records in ``jobs/``, tables, one figure per
metric). The models come from ``--cache-dir`` (``benchmarks/fill_cache.py`` trains them); a rerun
resumes, redoing only jobs without a record.

    python benchmarks/sweep.py                                   # MNIST, eps 0 ... 0.4
    python benchmarks/sweep.py --dataset fashion-mnist           # eps 0 ... 0.2, reference 0.1
    python benchmarks/sweep.py --dataset mnist-5k --seeds 0 1 2 3 4   # eps 0 ... 0.3, no download
    python benchmarks/sweep.py --workers 8 --device cuda         # 8 jobs sharing one GPU
"""

import logging
import time

import rvi

from _common import RESULTS, machine, parser, write_text


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist", choices=("mnist", "mnist-5k", "fashion-mnist"))
    p.add_argument("--model", default="lenet")
    p.add_argument("--eps", type=float, nargs="+", default=None,
                   help="training eps values (default: the dataset's grid)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-test", type=int, default=None, help="test images (default: all)")
    p.add_argument("--eval-n", type=int, default=500, help="AutoAttack images")
    p.add_argument("--faithfulness-n", type=int, default=1000)
    p.add_argument("--workers", type=int, default=None, help="jobs at once (default: cores)")
    p.add_argument("--backend", default="local", choices=("local", "ray"))
    p.add_argument("--ray-address", default=None)
    p.add_argument("--out", default=None, help="default: benchmarks/results/sweep_<dataset>")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.out or str(RESULTS / f"sweep_{args.dataset.replace('-', '_')}")
    threads = args.threads if args.workers == 1 else None  # else cores / workers
    config = rvi.SweepConfig(
        dataset=args.dataset, eps=tuple(args.eps or ()),
        data_dir=args.data_dir, download=False, model=args.model,
        seeds=tuple(args.seeds), n_test=args.n_test, eval_n=args.eval_n,
        faithfulness_n=args.faithfulness_n, device=args.device, cache_dir=args.cache_dir,
        out_dir=out, backend=args.backend, workers=args.workers, threads=threads,
        ray_address=args.ray_address)
    started = time.perf_counter()
    result = rvi.run_sweep(config, progress=True)
    folder = result.save()
    # a resumed sweep re-runs only missing jobs: the records hold every job's own time
    stages = {stage: sum(r["seconds"][stage] for r in result.records)
              for stage in ("train", "evaluate", "score")}
    write_text(folder / "machine.txt", f"{machine(args.device)}\nwall time of this run: "
                                       f"{time.perf_counter() - started:.0f} s\n"
               f"the {len(result.records)} jobs' own time (train or load, evaluate, score), "
               f"as recorded: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())
               + f"; torch threads per job: {config.threads or 'cores / workers'}\n")
    print(result.to_markdown())
    print(f"written to {folder}")


if __name__ == "__main__":
    main()
