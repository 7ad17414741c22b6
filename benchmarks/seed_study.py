"""The seed study's full 2x2 on full MNIST: both LeNets, all 10,000 test images, every default
metric and control. Writes ``benchmarks/results/seed_study/`` (tables, JSON records, figures).
``--dataset``, ``--model`` and ``--eps`` run the same study elsewhere, with the recipes of
:func:`rvi.sweep.sweep_recipe` (at eps 0.3 on MNIST these are ``recipes.NATURAL``/``ROBUST``).

    python benchmarks/seed_study.py --data-dir ../shared/data [--overwrite]
    python benchmarks/seed_study.py --seeds 0 1 2 3 4 --eval-attacks fgsm pgd pgd-40x5 \
        --out benchmarks/results/mnist_study                  # the method-level study
    python benchmarks/seed_study.py --dataset fashion-mnist --eps 0.1 --seeds 0 1 2 \
        --out benchmarks/results/fashion_study
"""

import torch

import rvi

from _common import RESULTS, parser, run_and_save
from rvi.sweep import sweep_recipe


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist")
    p.add_argument("--model", default="lenet", help="architecture")
    p.add_argument("--eps", type=float, default=0.3,
                   help="training and attack eps (PGD-7, step eps/3)")
    p.add_argument("--n-test", type=int, default=None, help="first N test images (default: all)")
    p.add_argument("--eval-n", type=int, default=1000,
                   help="test images for PGD-40x5 and AutoAttack")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="training seeds (each trains both models)")
    p.add_argument("--methods", nargs="+", default=["guided_backprop", "saliency"],
                   help="attribution methods (the first is the main one)")
    p.add_argument("--eval-attacks", nargs="+", default=["fgsm", "pgd", "pgd-40x5", "autoattack"],
                   help="attacks of the accuracy table")
    p.add_argument("--faithfulness-n", type=int, default=1000,
                   help="test images per cell for the faithfulness metrics")
    p.add_argument("--out", default=str(RESULTS / "seed_study"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing result")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    robust = sweep_recipe(args.eps)
    config = rvi.BenchmarkConfig(
        dataset=args.dataset, data_dir=args.data_dir, download=False, model=args.model,
        natural=sweep_recipe(0.0), robust=robust, attack=robust.attack,
        eval_attacks=tuple(args.eval_attacks), eval_n=args.eval_n, methods=tuple(args.methods),
        target="true", n_test=args.n_test, seeds=tuple(args.seeds), cascade_n=500,
        faithfulness_n=args.faithfulness_n, cache_dir=args.cache_dir, out_dir=args.out,
        device=args.device)
    run_and_save(config, args.out, args.overwrite, args.device)


if __name__ == "__main__":
    main()
