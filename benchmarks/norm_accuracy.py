"""Each model's robustness under both threat models, on full MNIST: the 40-epoch natural,
L-inf-robust (PGD-7 at eps 0.3) and L2-robust (PGDL2-7 at eps 2.0) LeNets of each seed (the
recipes of ``seed_study.py --recipe 40-epochs`` and ``seed_study.py --norm L2``), attacked in
L-inf at eps 0.3 and in L2 at eps 2.0 (``rvi.config.dataset_attack``) by PGD-7 on the first
``--n`` test images, PGD-40 with 5 restarts and AutoAttack on the first ``--eval-n``. Writes
``results/norm_accuracy.md`` (per model and seed, then the mean over seeds with a 95% Student-t
interval, whose spread is the seeds') and the same numbers as ``results/norm_accuracy.csv``.

    python benchmarks/seed_study.py --norm L2 --seeds 0 1 2 3 4 --train-only  # the L2 models
    python benchmarks/norm_accuracy.py --seeds 0 1 2 3 4
"""

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import rvi
from rvi.models.cache import cached_model_path, get_trained_model
from rvi.config import dataset_attack
from rvi.scoring.pipeline import evaluation
from rvi.analysis.stats import t_interval

from _common import RESULTS, machine, parser, write_text
from recipes import NATURAL_40, ROBUST_40

MODELS = {"natural": NATURAL_40, "L-inf robust": ROBUST_40,
          "L2 robust": dataclasses.replace(ROBUST_40, attack=dataset_attack("mnist", "L2"))}
#: The columns: each attack in each norm, at the dataset's default budget in that norm.
SPECS = tuple(f"{name}@{norm}" for norm in ("Linf", "L2")
              for name in ("pgd", "pgd-40x5", "autoattack"))


def evaluate_model(model, data, plan: list) -> dict:
    """Accuracy in %: clean and each ``(attack, images)`` of ``plan`` on its first images."""
    row = {}
    for count in sorted({count for _, count in plan}, reverse=True):
        attacks = [attack for attack, images in plan if images == count]
        result = rvi.evaluate(model, data.test_images, data.test_labels, attacks, n=count,
                              batch_size=500)
        row.setdefault("clean", 100 * result["clean"])  # on the most images
        row.update({attack.label: 100 * result[attack.label] for attack in attacks})
    return row


def summary(frame: pd.DataFrame) -> list:
    """Markdown rows: each model's mean over seeds and 95% t-interval, per column."""
    lines = []
    for model, rows in frame.groupby("model", sort=False):
        values = rows.drop(columns=["model", "seed"]).to_numpy(dtype=np.float64)
        mean, low, high, _, count, _ = t_interval(values)
        cells = [f"{m:.2f} [{lo:.2f}, {hi:.2f}]" if c >= 2 else f"{m:.2f}"
                 for m, lo, hi, c in zip(mean, low, high, count)]
        lines.append(f"| {model} | {len(rows)} | " + " | ".join(cells) + " |")
    return lines


def earlier_notes(csv: Path, seeds: list) -> list:
    """The notes on ``seeds``' models from the Markdown beside an earlier run's CSV (their times
    and that run's machine), or one line saying where the rows came from."""
    md = csv.with_suffix(".md")
    text = md.read_text().split("\n") if md.exists() else []
    notes = [line for line in text if line.startswith("- ")
             and any(f", seed {seed}:" in line for seed in seeds)]
    after = text[text.index("## Machine") + 1:] if "## Machine" in text else []
    where = [line for line in after if line.strip()][:1]
    which = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
    return notes + [f"- {which}: rows joined from an earlier run (`{csv.name}`)"
                    + (f"; measured on {where[0]}" if where else "")]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="*", default=[0], help="training seeds")
    p.add_argument("--join", nargs="*", default=[],
                   help="CSVs of earlier runs of this script whose rows (other seeds) join the tables")
    p.add_argument("--n", type=int, default=10000, help="test images for clean and PGD-7")
    p.add_argument("--eval-n", type=int, default=1000,
                   help="test images for PGD-40 x5 and AutoAttack")
    p.add_argument("--out", default=str(RESULTS / "norm_accuracy.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = rvi.load_dataset("mnist", args.data_dir, download=False)
    info = data.info()
    # rvi's own rule: PGD-7 on the first --n images, the costly attacks on the first --eval-n
    plan = [evaluation(spec, dataset_attack("mnist"), args.n, args.eval_n, "mnist")
            for spec in SPECS]
    rows, notes = [], []
    for name, base in MODELS.items():
        for seed in args.seeds:
            recipe = dataclasses.replace(base, seed=seed)
            cached = cached_model_path(args.cache_dir, info, "lenet", recipe).exists()
            model, history, path = get_trained_model(data, "lenet", recipe, args.cache_dir,
                                                     device=args.device)
            tick = time.perf_counter()
            rows.append({"model": name, "seed": seed,
                         **evaluate_model(model, data, plan)})
            notes.append(f"- {name}, seed {seed}: {recipe.recipe_label}; "
                         f"{'loaded from the cache' if cached else 'trained in this run'} "
                         f"(`{path.name}`, {len(history)} epochs); evaluated in "
                         f"{(time.perf_counter() - tick) / 60:.1f} min")
            print(notes[-1], {k: round(v, 2) for k, v in rows[-1].items() if k != "model"},
                  flush=True)
    labels = ["clean", *(attack.label for attack, _ in plan)]
    for csv in args.join:
        earlier = pd.read_csv(csv)
        if list(earlier.columns) != ["model", "seed", *labels]:
            raise ValueError(f"--join {csv}: its columns {list(earlier.columns)} are not this run's")
        joined = earlier[~earlier["seed"].isin([row["seed"] for row in rows])]
        rows += joined.to_dict("records")
        notes += earlier_notes(Path(csv), sorted(set(joined["seed"])))
    rows.sort(key=lambda row: (list(MODELS).index(row["model"]), row["seed"]))
    seeds = sorted({row["seed"] for row in rows})
    frame = pd.DataFrame(rows)[["model", "seed", *labels]]
    header = "| model | seed | " + " | ".join(labels) + " |"
    rule = "| --- " * (len(labels) + 2) + "|"
    lines = ["# Robust accuracy under both threat models", "",
             f"Full MNIST, LeNet, 40-epoch recipes (seeds {', '.join(map(str, seeds))}). "
             f"Clean and PGD-7 on the first {args.n} test images, PGD-40 x5 restarts and "
             f"AutoAttack (standard) on the first {args.eval_n}; accuracy in %. Measured by "
             f"`benchmarks/norm_accuracy.py` (per seed; see the notes).", "",
             "## Mean over seeds (95% Student-t interval over the seeds)", "",
             header.replace("| seed |", "| seeds |"), rule, *summary(frame), "",
             "## Per model and seed", "", header, rule]
    lines += [f"| {row['model']} | {row['seed']} | "
              + " | ".join(f"{row[label]:.2f}" for label in labels) + " |" for row in rows]
    lines += ["", "## Models and times", "", *notes, "",
              f"Whole script: {(time.perf_counter() - started) / 60:.1f} min"
              + (" (evaluating no model: it joined earlier runs' rows)." if not args.seeds else "."),
              "", "## Machine", "", machine(args.device), ""]
    out = Path(args.out)
    write_text(out, "\n".join(lines))
    write_text(out.with_suffix(".csv"), frame.to_csv(index=False, float_format="%.2f"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
