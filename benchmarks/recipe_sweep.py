"""Which recipe reaches the seed study's accuracy in the fewest training images: a sweep of
PGD-7 (eps 0.3, alpha 0.1) and natural recipes on full MNIST, each scored on the 10,000 test
images (clean, FGSM, PGD-7). A recipe's accuracy depends on the device only through float
rounding, which training amplifies (``rob bs128 lr0.003 E10 s0``: 89.33% PGD-7 on the CPU, 91.47%
on the GPU, about the spread between seeds), so the sweep can run on a GPU; rvi's defaults
(``TrainConfig()``) were chosen from it. The committed runs were made on one H100 lent by the
workplace's device tool, by a copy of this loop, in two calls, and on the 2-core CPU with one or
two threads, often several runs at a time (the table's device column gives each run's threads).
Models are trained through ``rvi.cache.get_trained_model`` (``--cache-dir``), so an interrupted
recipe resumes from its last epoch; ``train s`` sums the epochs' own times.

    python benchmarks/recipe_sweep.py --data-dir ../shared/data --device cuda   # run, append
    python benchmarks/recipe_sweep.py --render                                  # table only

Each finished recipe is appended as one JSON line to ``--runs`` (an interrupted sweep keeps what
it finished); ``--render`` writes ``benchmarks/results/recipe_sweep.md`` and ``recipe_sweep.png`` (PGD-7
accuracy against training images, each run a point) from every run file.
"""

import json
from pathlib import Path

import torch

import rvi
from rvi._io import atomic_write
from rvi.cache import get_trained_model
from rvi.config import parse_eval_attack

from _common import RESULTS, parser, write_text

ATTACK = rvi.AttackConfig(eps=0.3, alpha=0.1, steps=7)
TARGETS = {"natural": {"clean": 0.990}, "robust": {"clean": 0.985, "FGSM eps=0.3": 0.939,
                                                   "PGD-7 eps=0.3 alpha=0.1": 0.916}}
RECIPES = [(f"{'rob' if adversarial else 'nat'} bs{batch} lr{lr:g} E{epochs} s{seed}",
            rvi.TrainConfig(adversarial=adversarial, attack=ATTACK, batch_size=batch, lr=lr,
                            epochs=epochs, seed=seed))
           for adversarial, batch, lr, epochs, seed in [
               (False, 128, 3e-3, 5, 0), (False, 128, 3e-3, 6, 0), (False, 256, 4e-3, 3, 0),
               (False, 256, 4e-3, 5, 0), (False, 256, 4e-3, 8, 0), (False, 512, 6e-3, 10, 0),
               (True, 128, 3e-3, 10, 0), (True, 128, 3e-3, 15, 0),
               (True, 256, 3e-3, 12, 0), (True, 256, 3e-3, 12, 1), (True, 256, 4e-3, 10, 0),
               (True, 256, 4e-3, 15, 0), (True, 256, 4e-3, 15, 1), (True, 256, 4e-3, 20, 0),
               (True, 512, 3e-3, 10, 0), (True, 512, 3e-3, 12, 0), (True, 512, 3e-3, 12, 1),
               (True, 512, 3e-3, 12, 2), (True, 512, 4e-3, 12, 0), (True, 512, 4e-3, 12, 1),
               (True, 512, 6e-3, 12, 0), (True, 512, 6e-3, 16, 0), (True, 512, 6e-3, 16, 1),
               (True, 512, 6e-3, 20, 0), (True, 128, 3e-3, 20, 0)]]
# the eps warm-up (TrainConfig.eps_warmup_epochs, rvi 0.6): eps and step rise linearly over W epochs
RECIPES += [(f"rob bs128 lr{lr:g} E{epochs} W{warmup:g} s{seed}",
             rvi.TrainConfig(adversarial=True, attack=ATTACK, lr=lr, epochs=epochs, seed=seed,
                             eps_warmup_epochs=warmup))
            for lr, epochs, warmup, seed in [(3e-3, 20, 5, s) for s in (3, 2, 4, 0, 1)]
            + [(3e-3, 30, 5, s) for s in (2, 4, 3, 0, 1)]
            + [(3e-3, 40, 5, s) for s in (4, 0, 1, 2, 3)] + [(5e-3, 30, 5, 4)]]


def run(args) -> None:
    data = rvi.load_dataset("mnist", args.data_dir, download=False)
    device = torch.device(args.device)
    test = data.test_images.to(device), data.test_labels.to(device)
    attacks = [parse_eval_attack("fgsm", ATTACK), parse_eval_attack("pgd", ATTACK)]
    runs = Path(args.runs)
    done = {row["name"] for row in read_runs([runs] if runs.exists() else [])}
    for name, config in RECIPES:
        if (args.only and name not in args.only) or name in done:
            continue
        # through the model cache, so an interrupted recipe resumes from its last epoch
        model, history, _ = get_trained_model(data, "lenet", config, args.cache_dir,
                                              device=args.device, quiet=True)
        row = {"name": name, "train_s": round(sum(epoch["seconds"] for epoch in history), 1),
               "device": (torch.cuda.get_device_name(0) if device.type == "cuda"
                          else f"cpu, {torch.get_num_threads()} threads"),
               **rvi.evaluate(model, *test, attacks, batch_size=2500),
               "final_train_accuracy": history[-1]["accuracy"]}
        print(json.dumps(row), flush=True)
        with open(args.runs, "a") as handle:
            handle.write(json.dumps(row) + "\n")


def read_runs(run_files: list) -> list:
    """Every finished recipe's row from the JSON-lines run files."""
    return [json.loads(line) for path in run_files for line in Path(path).read_text().splitlines()]


def epochs_of(name: str) -> int:
    """The epochs of a recipe name: ``rob bs128 lr0.003 E20 W5 s2`` -> 20."""
    return int(name.split(" E")[1].split()[0])


def targets_met(row: dict) -> bool:
    """Whether a run meets every target of its kind (natural or robust)."""
    kind = "robust" if row["name"].startswith("rob") else "natural"
    return all(row.get(k, 0) >= v for k, v in TARGETS[kind].items())


def render(rows: list) -> str:
    lines = ["# Recipe sweep: time to the seed study's accuracy", "",
             "Full MNIST, LeNet, Adam with a one-cycle schedule; robust recipes train on "
             "torchattacks PGD-7 (eps 0.3, alpha 0.1). Accuracy on the 10,000 test images. "
             "Targets: natural >= 99.0% clean; robust >= 98.5% clean, >= 93.9% FGSM, >= 91.6% "
             "PGD-7. `images` = epochs x 60,000 (what a CPU pays for). `bf16`: "
             "`precision=\"bfloat16\"`. `train s` compares runs on one device and machine only; "
             "most CPU runs shared the 2 cores with other jobs (the device column gives each "
             "run's threads), and CPU machines of one kind differ up to twofold. Written by "
             "`benchmarks/recipe_sweep.py --render` from the run files in "
             "`benchmarks/results/recipe_sweep/`; `recipe_sweep.png` plots PGD-7 against the "
             "training images of every robust run.", "",
             "| recipe (bs batch, lr peak, E epochs, s seed) | device | train s | images | clean "
             "| FGSM | PGD-7 | targets met |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in sorted(rows, key=lambda r: r["name"]):
        lines.append(f"| {row['name']} | {row.get('device', '?')} | {row['train_s']} | "
                     f"{epochs_of(row['name']) * 60_000:,} | {100 * row['clean']:.2f} | "
                     f"{100 * row['FGSM eps=0.3']:.2f} | {100 * row['PGD-7 eps=0.3 alpha=0.1']:.2f} "
                     f"| {'yes' if targets_met(row) else 'no'} |")
    lines += ["", "## Every seed", "",
              "Robust recipes run on two or more seeds: how many runs meet every target, and the "
              "spread of PGD-7 accuracy over the runs (a recipe for rvi's default must meet the "
              "targets on every seed).", "",
              "| recipe | seeds | runs meeting every target | PGD-7 min | PGD-7 max |",
              "| --- | --- | --- | --- | --- |"]
    by_recipe: dict = {}
    for row in rows:
        if row["name"].startswith("rob"):
            by_recipe.setdefault(recipe_of(row["name"]), []).append(row)
    for recipe, runs in sorted(by_recipe.items()):
        seeds = sorted({part for r in runs for part in r["name"].split()[1:] if part[0] == "s"})
        if len(seeds) < 2:
            continue
        pgd = [100 * r["PGD-7 eps=0.3 alpha=0.1"] for r in runs]
        lines.append(f"| {recipe} | {', '.join(seeds)} | {sum(map(targets_met, runs))} of "
                     f"{len(runs)} | {min(pgd):.2f} | {max(pgd):.2f} |")
    return "\n".join(lines) + "\n"


def recipe_of(name: str) -> str:
    """The recipe without its seed: ``rob bs128 lr0.003 E20 W5 s2`` -> ``bs128 lr0.003 E20 W5``."""
    return " ".join(part for part in name.split()[1:] if not part.startswith("s"))


def draw_frontier(rows: list, path: Path) -> None:
    """Every robust run's PGD-7 accuracy against the images it trained on (each point one seed;
    device-independent cost), one colour per recipe, the seed study's target as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    frame = pd.DataFrame([{"recipe": recipe_of(r["name"]),
                           "training images (millions)": epochs_of(r["name"]) * 60_000 / 1e6,
                           "PGD-7 accuracy (%)": 100 * r["PGD-7 eps=0.3 alpha=0.1"],
                           "every target met": targets_met(r)}
                          for r in rows if r["name"].startswith("rob")])
    figure, axes = plt.subplots(figsize=(8, 5))
    sns.scatterplot(frame, x="training images (millions)", y="PGD-7 accuracy (%)", hue="recipe",
                    style="every target met", markers={True: "o", False: "X"}, s=70, ax=axes,
                    palette="tab20")
    axes.axhline(100 * TARGETS["robust"]["PGD-7 eps=0.3 alpha=0.1"], color="grey", ls="--", lw=1)
    axes.set_title("Robust LeNet recipes on full MNIST: training cost against PGD-7 accuracy\n"
                   "(each point one seed; dashed: the seed study's 91.6%)", fontsize=10)
    axes.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", default=str(RESULTS / "recipe_sweep" / "runs.jsonl"),
                   help="JSON-lines file each finished recipe is appended to")
    p.add_argument("--render", action="store_true", help="only write the table from the runs")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only these recipes, named as in the table (e.g. 'rob bs128 lr0.003 E20 s0')")
    args = p.parse_args()
    if not args.render:
        torch.set_num_threads(args.threads)
        Path(args.runs).parent.mkdir(parents=True, exist_ok=True)
        run(args)
    rows = read_runs(sorted((RESULTS / "recipe_sweep").glob("*.jsonl")))
    text = render(rows)
    write_text(RESULTS / "recipe_sweep.md", text)
    draw_frontier(rows, RESULTS / "recipe_sweep.png")
    print(text)


if __name__ == "__main__":
    main()
