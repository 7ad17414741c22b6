"""The seed study's full 2x2 on full MNIST: both LeNets, all 10,000 test images, every default
metric and control. Writes ``benchmarks/results/seed_study/`` (tables, JSON records, figures).
``--dataset``, ``--model`` and ``--eps`` run the same study elsewhere, with the recipes of
:func:`rvi.studies.sweep.sweep_recipe` (at eps 0.3 on MNIST these are ``recipes.NATURAL``/``ROBUST``).
``--recipe 40-epochs`` trains with ``recipes.NATURAL_40``/``ROBUST_40`` instead (40 epochs each,
the robust eps warmed up over 5, no hand-set first layer; MNIST at eps 0.3 only).
``--train-only`` trains (or loads) the models of every seed into the cache and stops.

    python benchmarks/seed_study.py --data-dir ../shared/data [--overwrite]
    python benchmarks/seed_study.py --seeds 0 1 2 3 4 --eval-attacks fgsm pgd pgd-40x5 \
        --cascade-n 200 --out benchmarks/results/mnist_default_study  # the method-level study
    python benchmarks/seed_study.py --dataset fashion-mnist --eps 0.1 --seeds 0 1 2 \
        --out benchmarks/results/fashion_study
    python benchmarks/seed_study.py --seeds 0 1 2 3 4 --recipe 40-epochs --train-only
"""

import dataclasses

import torch

import rvi

from _common import RESULTS, parser, run_and_save
from recipes import NATURAL_40, ROBUST_40
from rvi.models.cache import default_cache_dir, get_trained_model
from rvi.studies.sweep import sweep_recipe


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
    p.add_argument("--cascade-n", type=int, default=500,
                   help="test images of the layer randomization tests")
    p.add_argument("--out", default=str(RESULTS / "seed_study"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing result")
    p.add_argument("--recipe", choices=("default", "40-epochs"), default="default",
                   help="training recipes: rvi's automatic ones, or rvi 0.7-0.9's 40 epochs")
    p.add_argument("--norm", choices=("Linf", "L2"), default="Linf",
                   help="threat model: Linf (PGD-7 at --eps, step eps/3), or L2 (PGDL2 at the "
                        "dataset's L2 budget, rvi.config.dataset_attack, trained with the "
                        "40-epoch recipe; the natural partner is recipe 40-epochs' own model)")
    p.add_argument("--train-only", action="store_true",
                   help="train (or load) every seed's models into the cache, then stop")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    natural, robust = sweep_recipe(0.0), sweep_recipe(args.eps)
    if args.norm == "L2":
        if args.recipe != "default":
            p.error("--norm L2 trains its own recipe (40 epochs, eps warm-up 5); leave --recipe out")
        attack = rvi.config.dataset_attack(args.dataset, "L2")
        natural = NATURAL_40  # natural training ignores the attack: the 40-epoch study's models
        robust = dataclasses.replace(ROBUST_40, attack=attack)
    elif args.recipe == "40-epochs":
        if (args.dataset, args.eps) != ("mnist", 0.3):
            p.error(f"--recipe 40-epochs is MNIST at eps 0.3, got {args.dataset} at {args.eps}")
        natural, robust = NATURAL_40, ROBUST_40
    config = rvi.BenchmarkConfig(
        dataset=args.dataset, data_dir=args.data_dir, download=False, model=args.model,
        natural=natural, robust=robust, attack=robust.attack,
        eval_attacks=tuple(args.eval_attacks), eval_n=args.eval_n, methods=tuple(args.methods),
        target="true", n_test=args.n_test, seeds=tuple(args.seeds), cascade_n=args.cascade_n,
        faithfulness_n=args.faithfulness_n, cache_dir=args.cache_dir, out_dir=args.out,
        device=args.device)
    if args.train_only:
        data = rvi.load_dataset(args.dataset, args.data_dir, download=False)
        for seed in args.seeds:
            for kind in ("robust", "natural"):
                _, history, path = get_trained_model(
                    data, args.model, config.recipe(kind, seed),
                    args.cache_dir or default_cache_dir(), device=args.device, quiet=True)
                print(f"seed {seed}: {path.name}, {len(history)} epochs", flush=True)
        return
    run_and_save(config, args.out, args.overwrite, args.device)


if __name__ == "__main__":
    main()
