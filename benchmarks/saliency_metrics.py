"""Every attribution method and every metric for a natural and a PGD-trained LeNet on mnist-5k,
beside the controls, through the same scoring path as ``rvi bench``.

    python benchmarks/saliency_metrics.py [--seeds 0 1 2] [--overwrite]

Trains (or loads from ``benchmarks/cache``) both models with rvi's default recipe (40 epochs; the
robust one on PGD-7 eps 0.3 alpha 0.1, its eps rising over the first 5), explains the 1,000 test
images with Guided Backprop, the plain gradient, Integrated Gradients and SmoothGrad, scores every
metric of ``rvi.METRICS`` (faithfulness on the first ``--faithfulness-n`` images of each cell) and writes
``benchmarks/results/saliency_metrics/``.
"""

import torch

import rvi

from _common import RESULTS, parser, run_and_save


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    p.add_argument("--faithfulness-n", type=int, default=200,
                   help="test images per cell for the faithfulness metrics")
    p.add_argument("--out", default=str(RESULTS / "saliency_metrics"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing result")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    metrics = tuple(m for m in rvi.METRICS if m != "alignment")  # "alignment" = alignment_logit
    config = rvi.BenchmarkConfig(dataset="mnist-5k", methods=rvi.METHODS, metrics=metrics,
                                 eval_attacks=("fgsm", "pgd"), seeds=tuple(args.seeds),
                                 faithfulness_n=args.faithfulness_n, cache_dir=args.cache_dir,
                                 out_dir=args.out, device=args.device)
    run_and_save(config, args.out, args.overwrite, args.device)


if __name__ == "__main__":
    main()
