"""Is the first layer's second threshold (about 1 - eps) a cause of meeting the seed's targets, or
only a sign of it? Trains a recipe of ``recipe_sweep.py`` with one first-layer filter held from
the first step at a single-pixel threshold (weight ``--weight`` on the centre of filter
``--filter``, bias ``-level * weight``: the filter's ReLU opens at pixel value ``level``), and
scores it as the sweep does (10,000 test images: clean, FGSM, PGD-7, PGD-40 x 5).

    python benchmarks/threshold_probe.py --data-dir ../shared/data --threads 1 \
        --recipe "rob bs128 lr0.003 E20 W5 s0" --release-after 10

The held filter is rewritten before every forward pass (training, the attack's steps and the
evaluation), so what the optimizer does to it in between is undone; ``--release-after N`` stops
holding it after epoch N, from when it trains like the other filters (a hand-set start, not a
hand-set model). Held to the end, it is a probe, not a recipe: the hand-set filter is part of the
model that saliency maps explain. Each finished run is appended as one JSON line to
``results/recipe_sweep/probes/runs.jsonl`` with the first layer's switch-on levels after every
epoch; runs are not cached (an interrupted one starts again).
"""

import time

import torch

import rvi

from _common import parser
from recipe_sweep import PGD7, PROBE_RUNS, RECIPES, append_row, score, switch_on_levels


def hold_threshold(conv: torch.nn.Conv2d, index: int, level: float,
                   weight: float) -> torch.utils.hooks.RemovableHandle:
    """Keep filter ``index`` of ``conv`` at ``weight`` on its centre pixel (zero elsewhere) with
    bias ``-level * weight``, rewritten before every forward pass until the returned handle's
    ``remove()``."""
    centre = tuple(size // 2 for size in conv.weight.shape[1:])

    def rewrite(module, inputs):
        with torch.no_grad():
            module.weight[index].zero_()
            module.weight[(index, *centre)] = weight
            module.bias[index] = -level * weight

    return conv.register_forward_pre_hook(rewrite)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--recipe", required=True, help="a robust recipe of recipe_sweep.py, by name")
    p.add_argument("--level", type=float, default=0.69, help="pixel value at which the filter opens")
    p.add_argument("--weight", type=float, default=1.2,
                   help="its centre weight (the learned 0.69 filters hold 0.9-1.4)")
    p.add_argument("--filter", type=int, default=0, help="which of the first layer's filters to hold")
    p.add_argument("--release-after", type=int, default=None, metavar="EPOCHS",
                   help="let the filter train freely after this many epochs (default: held to the end)")
    args = p.parse_args()
    recipes = dict(RECIPES)
    if args.recipe not in recipes or not recipes[args.recipe].adversarial:
        raise ValueError(f"--recipe must name a robust recipe of recipe_sweep.py, got {args.recipe!r}")
    if not 0 < args.level < 1:
        raise ValueError(f"--level must be in (0, 1), got {args.level}")
    if args.weight <= 0:
        raise ValueError(f"--weight must be > 0, got {args.weight}")
    torch.set_num_threads(args.threads)
    config = recipes[args.recipe]
    data = rvi.load_dataset("mnist", args.data_dir, download=False)
    model = rvi.new_model("lenet", config)
    conv = next(module for module in model.modules() if isinstance(module, torch.nn.Conv2d))
    if not 0 <= args.filter < conv.out_channels:
        raise ValueError(f"--filter must be in [0, {conv.out_channels}), got {args.filter}")
    if args.release_after is not None and not 0 < args.release_after < config.epochs:
        raise ValueError(f"--release-after must be in (0, {config.epochs}), got {args.release_after}")
    hold = hold_threshold(conv, args.filter, args.level, args.weight)
    levels_by_epoch = []

    def after_epoch(metrics):
        levels_by_epoch.append(switch_on_levels(model))
        if metrics["epoch"] == args.release_after:
            hold.remove()

    started = time.perf_counter()
    history = rvi.train_model(model, data.train_images, data.train_labels, config, quiet=True,
                              on_epoch_end=after_epoch)
    train_s = time.perf_counter() - started
    scores = score(model, data.test_images, data.test_labels)
    append_row(PROBE_RUNS, {
        "name": f"{args.recipe} + held {args.level:g} threshold"
                + (f" for {args.release_after} epochs" if args.release_after else ""),
        "recipe": args.recipe, "held": {"filter": args.filter, "level": args.level,
                                        "weight": args.weight, "epochs": args.release_after},
        "train_s": round(train_s, 1), "device": f"{args.device}, {torch.get_num_threads()} threads",
        **scores, "final_train_accuracy": history[-1]["accuracy"],
        "levels_by_epoch": levels_by_epoch})
    print(f"PGD-7 {scores[PGD7]:.2%}")


if __name__ == "__main__":
    main()
