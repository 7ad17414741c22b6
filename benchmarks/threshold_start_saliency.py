"""Does the first layer's threshold start change the saliency maps rvi compares? Scores, per seed,
the robust LeNet of rvi 0.9's default recipe (``recipes.ROBUST_40``, 40 epochs; "default recipe"
in the names below and in the committed result, made with rvi 0.9), the one trained with the
threshold start (``recipes.ROBUST``, rvi 0.10's default: 12 epochs) and the natural LeNet
(``recipes.NATURAL_40``) side by side with :func:`rvi.compare` on the first ``--n-test`` MNIST test
images: every default metric and control, the robust default as the reference, intervals over
the seeds' means. Models come from (or go to) the benchmark cache.

    python benchmarks/threshold_start_saliency.py --data-dir ../shared/data --seeds 0 1 2 3 4
"""

import dataclasses
import time

import torch

import rvi
from rvi.models.cache import get_trained_model

from _common import RESULTS, machine, parser
from recipes import NATURAL_40, ROBUST, ROBUST_40, SEED_ATTACK

MODELS = {"robust, default recipe": ROBUST_40, "robust, threshold start": ROBUST,
          "natural, default recipe": NATURAL_40}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="training seeds")
    p.add_argument("--n-test", type=int, default=1000, help="first N test images")
    p.add_argument("--out", default=str(RESULTS / "threshold_start_saliency"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing result")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = rvi.load_dataset("mnist", args.data_dir, download=False)
    sets = [{name: get_trained_model(data, "lenet", dataclasses.replace(recipe, seed=seed),
                                     args.cache_dir, device=args.device, quiet=True)[0]
             for name, recipe in MODELS.items()} for seed in args.seeds]
    sources = {name: recipe.recipe_label for name, recipe in MODELS.items()}
    config = rvi.BenchmarkConfig(attack=SEED_ATTACK, eval_attacks=("fgsm", "pgd"),
                                 n_test=args.n_test, seeds=tuple(args.seeds), device=args.device)
    result = rvi.compare(sets, data.test_images, data.test_labels, config, sources=sources,
                         data_name="MNIST test set", progress=True)
    folder = result.save(args.out, overwrite=args.overwrite)
    print(result.to_markdown())
    print(machine(args.device))
    print(f"saved to {folder} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
