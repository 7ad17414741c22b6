"""How many noise draws ``infidelity_unexplained`` needs: its bias and its draw-to-draw spread
against the number of draws, on rvi bench's mnist-5k LeNets (default recipes, seed 0).

1 - R² of a map against the logit's change under Gaussian noise is fitted on the draws of each
image (Captum's least-squares scale), so with few draws the fit explains more than it should and
the score reads low. For each count the mean over ``--n`` test images is measured with
``--repeats`` independent noise seeds; the bias is the mean against the ``--reference`` count's
value. Writes ``benchmarks/results/infidelity_draws.md``.

    python benchmarks/infidelity_draws.py                  # about 4 minutes on 2 cores
"""

import time

import numpy as np
import pandas as pd
import torch

import rvi
from rvi.models.cache import default_cache_dir, get_trained_model
from rvi.metrics.relative import infidelity_unexplained

from _common import RESULTS, machine, parser, write_text

COUNTS = (5, 10, 20, 50, 100, 200)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(cache_dir=None)
    p.add_argument("--n", type=int, default=200, help="test images")
    p.add_argument("--repeats", type=int, default=5, help="noise seeds per count")
    p.add_argument("--reference", type=int, default=1000, help="draws of the reference value")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = rvi.load_dataset("mnist-5k")
    x, y = data.test_images[:args.n], data.test_labels[:args.n]
    rows = []
    for kind, config in (("natural", rvi.TrainConfig()),
                         ("robust", rvi.TrainConfig(adversarial=True))):
        model, _, path = get_trained_model(data, "lenet", config,
                                           args.cache_dir or default_cache_dir(), quiet=True)
        maps = rvi.explain(model, x, "true", labels=y, absolute=False).maps
        reference = float(infidelity_unexplained(model, x, maps, y, n_perturb_samples=args.reference,
                                                 seed=10_000).double().mean())
        for count in COUNTS:
            means = [float(infidelity_unexplained(model, x, maps, y, n_perturb_samples=count,
                                                  seed=seed).double().mean())
                     for seed in range(args.repeats)]
            rows.append({"model": kind, "draws": count, "mean": np.mean(means),
                         "bias": np.mean(means) - reference,
                         "sd over noise seeds": np.std(means, ddof=1)})
        rows.append({"model": kind, "draws": args.reference, "mean": reference, "bias": 0.0,
                     "sd over noise seeds": np.nan})
        print(f"{kind}: {path.name}, reference {reference:.4f}", flush=True)
    table = pd.DataFrame(rows)
    text = "\n".join([
        "# infidelity_unexplained: bias and spread against the number of noise draws", "",
        f"Guided Backprop maps (signed) of rvi bench's mnist-5k LeNets (default recipes, seed 0), "
        f"the first {args.n} test images, true-label targets. `mean`: the mean over images, "
        f"averaged over {args.repeats} noise seeds; `bias`: against {args.reference} draws (one "
        f"seed); `sd over noise seeds`: how far one study's number moves with the noise seed.", "",
        table.to_markdown(index=False, floatfmt=".4f"), "",
        f"- {machine(args.device)}",
        f"- wall time {time.perf_counter() - started:.0f} s", ""])
    write_text(RESULTS / "infidelity_draws.md", text)
    print(text)


if __name__ == "__main__":
    main()
