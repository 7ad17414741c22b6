"""Which recipe reaches the seed study's accuracy at the least training cost: a sweep of
PGD-7 (eps 0.3, alpha 0.1) and natural recipes on full MNIST, and a separate family with fewer,
larger PGD steps, each scored on the 10,000 test images (clean, FGSM, PGD-7; PGD-40 x 5 from
rvi 0.7 on). A recipe's accuracy depends on the device only through float rounding, which
training amplifies (``rob bs128 lr0.003 E10 s0``: 89.33% PGD-7 on the CPU, 91.47%
on the GPU, about the spread between seeds), so the sweep can run on a GPU; rvi's defaults
(``TrainConfig()``) were chosen from it. The committed runs were made on one H100 lent by the
workplace's device tool, by a copy of this loop, in two calls, and on the 2-core CPU with one or
two threads, often several runs at a time (the table's device column gives each run's threads).
Models are trained through ``rvi.models.cache.get_trained_model`` (``--cache-dir``), so an interrupted
recipe resumes from its last epoch; ``train s`` sums the epochs' own times.

    python benchmarks/recipe_sweep.py --data-dir ../shared/data --device cuda   # run, append
    python benchmarks/recipe_sweep.py --render                                  # table only
    python benchmarks/recipe_sweep.py --data-dir ../shared/data \
        --autoattack "rob PGD-3 bs128 lr0.003 E40 W5 s0"              # AutoAttack, cached model

Each finished recipe is appended as one JSON line to ``--runs`` (an interrupted sweep keeps what
it finished; ``--autoattack`` appends to ``autoattack/runs.jsonl`` beside them, ``--levels`` the
first layer's thresholds of the cached robust models to ``levels/runs.jsonl``, and
``threshold_probe.py`` its runs to ``probes/runs.jsonl``); ``--render`` writes
``benchmarks/results/recipe_sweep.md`` and ``recipe_sweep.png`` (PGD-7 accuracy against
forward-backward passes, each run a point) from every run file.
"""

import json
from pathlib import Path

import torch

import rvi
from rvi._core.io import atomic_write
from rvi.models.cache import cached_model_path, get_trained_model
from rvi.config import ONECYCLE_WARMUP_SHARE, parse_eval_attack

from _common import RESULTS, parser, write_text
from recipes import fewer_steps_attack

ATTACK = rvi.AttackConfig(eps=0.3, alpha=0.1, steps=7)
PGD7 = "PGD-7 eps=0.3 alpha=0.1"
TARGETS = {"natural": {"clean": 0.990},
           "robust": {"clean": 0.985, "FGSM eps=0.3": 0.939, PGD7: 0.916}}
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
# the eps warm-up (TrainConfig.eps_warmup_epochs, rvi 0.6): eps and step rise linearly over W
# epochs. `P0.5`: the one-cycle peak at that share of the steps (TrainConfig.lr_warmup_share, rvi
# 0.8) instead of torch's 0.3
RECIPES += [(f"rob bs{batch} lr{lr:g} E{epochs} W{warmup:g}{f' P{share:g}' if share else ''} s{seed}",
             rvi.TrainConfig(adversarial=True, attack=ATTACK, batch_size=batch, lr=lr,
                             epochs=epochs, seed=seed, eps_warmup_epochs=warmup,
                             lr_warmup_share=share or ONECYCLE_WARMUP_SHARE))
            for batch, lr, epochs, warmup, share, seed in
            [(128, 3e-3, 20, 5, None, s) for s in (3, 2, 4, 0, 1)]
            + [(128, 3e-3, 30, 5, None, s) for s in (2, 4, 3, 0, 1)]
            + [(128, 3e-3, 40, 5, None, s) for s in (4, 0, 1, 2, 3)] + [(128, 5e-3, 30, 5, None, 4)]
            + [(128, 3e-3, 20, 5, 0.5, s) for s in (2, 4, 0, 1, 3)] + [(128, 3e-3, 30, 5, 0.5, 4)]
            + [(64, 3e-3, 20, 5, None, s) for s in (0, 4, 1, 2, 3)]
            + [(128, 3e-3, 12, 3, None, s) for s in (0, 1, 2, 3, 4)]]
# a separate family: fewer PGD steps with a larger step (alpha = 2.5 eps / steps, the rule that
# gives the seed's 0.1 for 7 steps, unless the name gives another alpha), the 40-epoch recipe's epochs
# and warm-up; scored with PGD-7 as all
RECIPES += [(f"rob PGD-{steps}{f' a{alpha:g}' if alpha else ''} bs128 lr0.003 E{epochs} W5"
             f"{f' P{share:g}' if share else ''} s{seed}",
             rvi.TrainConfig(adversarial=True, lr=3e-3, epochs=epochs, seed=seed,
                             eps_warmup_epochs=5, attack=fewer_steps_attack(steps, alpha),
                             lr_warmup_share=share or ONECYCLE_WARMUP_SHARE))
            for steps, alpha, epochs, share, seed in [(3, None, 40, None, s) for s in (0, 1, 2, 3)]
            + [(2, None, 40, None, 0), (2, 0.2, 40, None, 0)]
            + [(3, 0.15, 40, None, s) for s in (2, 0)] + [(4, None, 40, None, s) for s in (0, 2)]
            + [(3, None, 40, 0.15, 2)] + [(3, None, 40, 0.5, s) for s in (2, 0, 1, 3, 4)]]
STRONG = "PGD-40 eps=0.3 alpha=0.01875 x5 restarts"
#: AutoAttack results of ``--autoattack`` (one JSON line per model; a subfolder, so that
#: ``--render`` does not read them as recipe runs)
AUTOATTACK_RUNS = RESULTS / "recipe_sweep" / "autoattack" / "runs.jsonl"
#: the first layer's switch-on levels of each finished robust run (``--levels``), likewise apart
LEVEL_RUNS = RESULTS / "recipe_sweep" / "levels" / "runs.jsonl"
#: runs of ``threshold_probe.py`` (a recipe with one first-layer filter held at a threshold)
PROBE_RUNS = RESULTS / "recipe_sweep" / "probes" / "runs.jsonl"
#: switch-on levels in these ranges: the threshold at eps = 0.3, and the second, high one the
#: met runs share (1 - eps = 0.7)
EPS_LEVEL, HIGH_LEVEL = (0.25, 0.35), (0.6, 0.8)
#: forward-backward passes of rvi 0.7-0.9's default robust recipe (PGD-7, 40 epochs of 60,000 images)
REFERENCE_PASSES = 40 * 60_000 * 8


def run(args) -> None:
    data = rvi.load_dataset("mnist", args.data_dir, download=False)
    device = torch.device(args.device)
    test = data.test_images.to(device), data.test_labels.to(device)
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
               **score(model, *test),
               "final_train_accuracy": history[-1]["accuracy"]}
        append_row(Path(args.runs), row)


def score(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """The sweep's scores of ``model`` on ``images`` (N, 1, 28, 28) in [0, 1]: clean, FGSM,
    PGD-7 and PGD-40 x 5 accuracy, as ``rvi.evaluate`` returns them."""
    attacks = [parse_eval_attack(spec, ATTACK) for spec in ("fgsm", "pgd", "pgd-40x5")]
    return rvi.evaluate(model, images, labels, attacks, batch_size=2500)


def autoattack(args) -> None:
    """AutoAttack (standard, eps 0.3) on the first ``--autoattack-n`` test images for each
    finished recipe named in ``--autoattack``, from its cached model; one JSON line each to
    ``AUTOATTACK_RUNS`` (a recipe whose model is not in the cache is an error, not trained)."""
    data = rvi.load_dataset("mnist", args.data_dir, download=False)
    recipes = dict(RECIPES)
    for name in args.autoattack:
        if name not in recipes:
            raise ValueError(f"--autoattack: no recipe named {name!r}")
        path = cached_model_path(args.cache_dir, data, "lenet", recipes[name])
        if not path.exists():
            raise ValueError(f"--autoattack: {name!r} has no model in {args.cache_dir} ({path.name})")
        model = rvi.load_model(path).to(args.device)
        row = {"name": name, "autoattack_n": args.autoattack_n,
               **rvi.evaluate(model, data.test_images, data.test_labels,
                              [parse_eval_attack("autoattack", ATTACK)], n=args.autoattack_n,
                              batch_size=500)}
        append_row(AUTOATTACK_RUNS, row)


def switch_on_levels(model: torch.nn.Module) -> list:
    """The input levels at which the first convolution's single-pixel filters switch on.

    A filter whose largest weight ``w`` holds at least 90% of its absolute weight (and whose
    absolute weight is at least 0.3, i.e. not a dead filter) computes about ``w * x + b`` of one
    pixel ``x`` in [0, 1], which the ReLU after it passes from ``x = -b / w`` on: a threshold on
    the pixel. Returns those levels, sorted, rounded to 2 decimals (robust LeNets learn 0.3 = eps,
    some also about 0.7)."""
    conv = next(module for module in model.modules() if isinstance(module, torch.nn.Conv2d))
    weights = conv.weight.detach().flatten(1)
    bias = conv.bias.detach()
    mass = weights.abs().sum(1)
    peak = weights.gather(1, weights.abs().argmax(1, keepdim=True)).squeeze(1)
    single = (peak.abs() >= 0.9 * mass) & (mass >= 0.3)
    return sorted(round(float(-b / w), 2) for b, w in zip(bias[single], peak[single]))


def levels(args) -> None:
    """:func:`switch_on_levels` of every finished robust run whose model is in the cache and
    that ``LEVEL_RUNS`` lacks; one JSON line each (runs whose model is not in the cache, or whose
    recipe this script no longer lists, are named, not measured)."""
    data = rvi.load_dataset("mnist", args.data_dir, download=False)
    recipes = dict(RECIPES)
    missing = []
    for row in all_rows():
        name = row["name"]
        if not name.startswith("rob") or "levels" in row:
            continue
        path = cached_model_path(args.cache_dir, data, "lenet", recipes[name]) if name in recipes else None
        if path is None or not path.exists():
            missing.append(name)
            continue
        append_row(LEVEL_RUNS, {"name": name, "levels": switch_on_levels(rvi.load_model(path))})
    if missing:
        print(f"not in {args.cache_dir}, not measured: {', '.join(missing)}")


def append_row(path: Path, row: dict) -> None:
    """Print ``row`` and append it to the JSON-lines file ``path`` (an interrupted sweep keeps
    every row it finished)."""
    print(json.dumps(row), flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


def all_rows() -> list:
    """Every run of the committed run files, with its AutoAttack result and levels if measured."""
    rows = read_runs(sorted((RESULTS / "recipe_sweep").glob("*.jsonl")))
    rows = joined(rows, AUTOATTACK_RUNS, "autoattack", lambda found: found)
    return joined(rows, LEVEL_RUNS, "levels", lambda found: found["levels"])


def joined(rows: list, path: Path, field: str, value) -> list:
    """``rows`` with ``field`` set to ``value(r)`` of the last row ``r`` of the JSON-lines file
    ``path`` (if it exists) that has the same name."""
    if not path.exists():
        return rows
    found = {r["name"]: value(r) for r in read_runs([path])}
    return [{**row, field: found[row["name"]]} if row["name"] in found else row for row in rows]


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
             "torchattacks PGD-7 (eps 0.3, alpha 0.1), except the fewer-steps family (`PGD-k` in "
             "the name: k steps of alpha 2.5 x 0.3 / k, a cheaper training attack, labelled "
             "apart); `W5`: the training eps and step rise linearly over the first 5 epochs; `P0.5`: "
             "the one-cycle schedule peaks at that share of the steps (torch's 0.3 otherwise). "
             "Every model is scored on the 10,000 test images with the seed's FGSM and "
             "PGD-7 (eps 0.3, alpha 0.1) and, for runs from rvi 0.7 on, PGD-40 x 5 restarts "
             "(alpha 0.01875), and some with AutoAttack (standard, eps 0.3) on the first n test "
             "images (`--autoattack`). Targets: natural >= 99.0% clean; robust >= 98.5% clean, >= 93.9% "
             "FGSM, >= 91.6% PGD-7. `images` = epochs x 60,000; a robust epoch costs about "
             "(k + 1) forward-backward passes per image (k = 7, or the family's k); a smaller batch "
             "costs more per pass on the CPU (`speed.md`). `bf16`: "
             "`precision=\"bfloat16\"`. `train s` compares runs on one device and machine only; "
             "most CPU runs shared the 2 cores with other jobs (the device column gives each "
             "run's threads), and CPU machines of one kind differ up to twofold. Written by "
             "`benchmarks/recipe_sweep.py --render` from the run files in "
             "`benchmarks/results/recipe_sweep/`; `recipe_sweep.png` plots PGD-7 against the "
             "training passes of every robust run.", "",
             "| recipe (bs batch, lr peak, E epochs, W warm-up, P peak share, s seed) | device "
             "| train s | images | clean | FGSM | PGD-7 | PGD-40x5 | AutoAttack (first n) | targets met |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in sorted(rows, key=lambda r: r["name"]):
        strong = f"{100 * row[STRONG]:.2f}" if STRONG in row else "-"
        found = row.get("autoattack")
        auto = f"{100 * found['AutoAttack eps=0.3']:.1f} ({found['n']:,})" if found else "-"
        lines.append(f"| {row['name']} | {row.get('device', '?')} | {row['train_s']} | "
                     f"{epochs_of(row['name']) * 60_000:,} | {100 * row['clean']:.2f} | "
                     f"{100 * row['FGSM eps=0.3']:.2f} | {100 * row[PGD7]:.2f} "
                     f"| {strong} | {auto} | {'yes' if targets_met(row) else 'no'} |")
    lines += ["", "## Every seed", "",
              "Robust recipes run on two or more seeds: how many runs meet every target, and the "
              "spread of PGD-7 accuracy over the runs (a recipe for rvi's default must meet the "
              "targets on every seed). Cost: forward-backward passes against the 40-epoch recipe's "
              "(PGD-7, 40 epochs; rvi 0.7-0.9's default).", "",
              "| recipe | cost | seeds | runs meeting every target | PGD-7 min | PGD-7 max |",
              "| --- | --- | --- | --- | --- | --- |"]
    by_recipe: dict = {}
    for row in rows:
        if row["name"].startswith("rob"):
            by_recipe.setdefault(recipe_of(row["name"]), []).append(row)
    for recipe, runs in sorted(by_recipe.items()):
        seeds = sorted({part for r in runs for part in r["name"].split()[1:] if part[0] == "s"})
        if len(seeds) < 2:
            continue
        pgd = [100 * r[PGD7] for r in runs]
        cost = passes_of(runs[0]["name"]) / REFERENCE_PASSES
        lines.append(f"| {recipe} | {cost:.2f} | {', '.join(seeds)} | {sum(map(targets_met, runs))} of "
                     f"{len(runs)} | {min(pgd):.2f} | {max(pgd):.2f} |")
    return "\n".join(lines + level_lines(rows) + probe_lines(rows)) + "\n"


def level_lines(rows: list) -> list:
    """The section on the first layer's switch-on levels (rows measured by ``--levels``)."""
    measured = [row for row in rows if "levels" in row]
    if not measured:
        return []

    def has(row, level_range):
        return any(level_range[0] <= x <= level_range[1] for x in row["levels"])

    high = [row for row in measured if has(row, HIGH_LEVEL)]
    low = [row for row in measured if not has(row, HIGH_LEVEL)]
    eps_level = sum(has(row, EPS_LEVEL) for row in measured)
    lines = ["", "## First-layer thresholds", "",
             "The robust LeNets' first convolution learns single-pixel filters, each a threshold "
             "on one pixel (`switch_on_levels`: the input level at which the filter's ReLU opens; "
             f"written by `--levels` from the cached models, {len(measured)} runs). {eps_level} of "
             "them learn the level 0.3 (= eps: a background pixel raised by the attack stays off); "
             f"some also learn a second level in [{HIGH_LEVEL[0]:g}, {HIGH_LEVEL[1]:g}] "
             "(about 1 - eps). Runs with that second level meet every target in "
             f"{sum(map(targets_met, high))} of {len(high)}; runs without it in "
             f"{sum(map(targets_met, low))} of {len(low)}.", "",
             "| run | levels | PGD-7 | targets met |", "| --- | --- | --- | --- |"]
    for row in sorted(measured, key=lambda r: r[PGD7]):
        lines.append(f"| {row['name']} | {', '.join(f'{x:.2f}' for x in row['levels']) or 'none'} | "
                     f"{100 * row[PGD7]:.2f} | "
                     f"{'yes' if targets_met(row) else 'no'} |")
    return lines


def probe_lines(rows: list) -> list:
    """The section on ``threshold_probe.py``'s runs, each beside its recipe's own run."""
    probes = probe_runs()
    if not probes:
        return []
    unheld = {row["name"]: row for row in rows}

    def group(probe):
        return recipe_of(probe["recipe"]), probe["held"]["level"], held_span(probe)

    lines = ["", "## A threshold held by hand (probe)", "",
             "`threshold_probe.py` trains a recipe of this table with one first-layer filter held "
             "from the first step at a single-pixel threshold (weight 1.2 on its centre, switching on "
             "at the level given), for every epoch or for the first epochs given, after which it "
             "trains freely; the other five filters and the rest of the network train as usual, from "
             "the same seed. A probe of whether the second threshold is a cause of meeting the "
             "targets: held for every epoch, the hand-set filter is part of the model the saliency "
             "maps explain. `without`: the runs of the same recipe and seeds without a held filter.",
             "", "| recipe | cost | held level | held for | seeds | runs meeting every target | PGD-7 min "
             "| PGD-7 max | without: meeting every target |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in sorted({group(probe) for probe in probes}, key=lambda k: (k[0], -k[1], k[2])):
        runs = [p for p in probes if group(p) == key]
        pgd = [100 * p[PGD7] for p in runs]
        paired = [unheld[p["recipe"]] for p in runs if p["recipe"] in unheld]
        seeds = ", ".join(sorted(p["recipe"].split()[-1] for p in runs))
        without = f"{sum(map(targets_met, paired))} of {len(paired)}" if paired else "-"
        lines.append(f"| {key[0]} | {passes_of(runs[0]['recipe']) / REFERENCE_PASSES:.2f} | {key[1]:g} "
                     f"| {key[2]} | {seeds} | {sum(map(targets_met, runs))} of {len(runs)} | "
                     f"{min(pgd):.2f} | {max(pgd):.2f} | {without} |")
    lines += ["", "| recipe | held level, epochs | train s | clean | FGSM | PGD-7 | PGD-40x5 "
              "| targets met | PGD-7 without | levels after the last epoch |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for probe in sorted(probes, key=lambda p: (p["recipe"], p["held"]["level"], held_epochs(p))):
        without = unheld.get(probe["recipe"])
        lines.append(f"| {probe['recipe']} | {probe['held']['level']:g}, "
                     f"{held_epochs(probe)} of {epochs_of(probe['recipe'])} | {probe['train_s']} | "
                     f"{100 * probe['clean']:.2f} | {100 * probe['FGSM eps=0.3']:.2f} | "
                     f"{100 * probe[PGD7]:.2f} | {100 * probe[STRONG]:.2f} | "
                     f"{'yes' if targets_met(probe) else 'no'} | "
                     f"{f'{100 * without[PGD7]:.2f}' if without else '-'} | "
                     f"{', '.join(f'{x:.2f}' for x in probe['levels_by_epoch'][-1])} |")
    return lines


def probe_runs() -> list:
    """The rows of ``threshold_probe.py``'s run file (none if it does not exist)."""
    return read_runs([PROBE_RUNS]) if PROBE_RUNS.exists() else []


def held_span(probe: dict) -> str:
    """How long a probe held its filter, in words."""
    epochs = probe["held"].get("epochs")
    return f"the first {epochs} epochs" if epochs else "every epoch"


def held_epochs(probe: dict) -> int:
    """The epochs a probe held its filter (``epochs`` None: to the end of training)."""
    return probe["held"].get("epochs") or epochs_of(probe["recipe"])


def passes_of(name: str) -> int:
    """Forward-backward passes a robust recipe pays for: epochs x 60,000 x (attack steps + 1),
    the steps 7 unless the name says ``PGD-k``."""
    steps = next((int(part[4:]) for part in name.split() if part.startswith("PGD-")), 7)
    return epochs_of(name) * 60_000 * (steps + 1)


def recipe_of(name: str) -> str:
    """The recipe without its seed: ``rob bs128 lr0.003 E20 W5 s2`` -> ``bs128 lr0.003 E20 W5``."""
    return " ".join(part for part in name.split()[1:] if not part.startswith("s"))


def family_of(name: str) -> str:
    """The family a robust run belongs to in the frontier figure:
    ``rob PGD-3 bs128 lr0.003 E40 W5 P0.5 s0`` -> ``PGD-k, eps warm-up, peak at 0.5``; a batch
    other than 128 is named (``rob bs64 lr0.003 E20 W5 s0`` -> ``PGD-7, eps warm-up, batch 64``)."""
    parts = name.split()
    attack = "PGD-k" if any(part.startswith("PGD-") for part in parts) else "PGD-7"
    warmup = ", eps warm-up" if any(part.startswith("W") for part in parts) else ""
    peak = next((f", peak at {part[1:]}" for part in parts if part.startswith("P")
                 and not part.startswith("PGD")), "")
    batch = next(part[2:] for part in parts if part.startswith("bs"))
    return attack + warmup + peak + ("" if batch == "128" else f", batch {batch}")


def draw_frontier(rows: list, path: Path) -> None:
    """Every robust run's PGD-7 accuracy against the forward-backward passes it trained with
    (each point one seed; device-independent cost), one colour per family of recipes (the
    recipes themselves are too many to tell apart by colour; the table names each run), the
    probes of ``threshold_probe.py`` as families of their own, the seed study's target as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    frame = pd.DataFrame([{"family": family_of(r["name"]),
                           "training passes (millions)": passes_of(r["name"]) / 1e6,
                           "PGD-7 accuracy (%)": 100 * r[PGD7],
                           "every target met": targets_met(r)}
                          for r in rows if r["name"].startswith("rob")]
                         + [{"family": f"probe: {p['held']['level']:g} held {held_span(p)}",
                             "training passes (millions)": passes_of(p["recipe"]) / 1e6,
                             "PGD-7 accuracy (%)": 100 * p[PGD7], "every target met": targets_met(p)}
                            for p in probe_runs()])
    floor = 85.0  # a run that collapsed (PGD-2 alpha 0.375: 26.9%) would flatten the rest
    frame["PGD-7 accuracy (%)"] = frame["PGD-7 accuracy (%)"].clip(lower=floor)
    figure, axes = plt.subplots(figsize=(8, 5))
    sns.scatterplot(frame, x="training passes (millions)", y="PGD-7 accuracy (%)", hue="family",
                    hue_order=sorted(frame["family"].unique()), alpha=0.75,
                    style="every target met", markers={True: "o", False: "X"}, s=70, ax=axes,
                    palette="tab20")
    axes.axhline(100 * TARGETS["robust"][PGD7], color="grey", ls="--", lw=1)
    axes.set_title("Robust LeNet recipes on full MNIST: training cost against PGD-7 accuracy\n"
                   f"(each point one seed; dashed: the seed study's 91.6%; runs below {floor:g}% "
                   f"drawn at {floor:g}%;\nprobe: one first-layer filter held by hand)", fontsize=10)
    axes.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", default=str(RESULTS / "recipe_sweep" / "runs.jsonl"),
                   help="JSON-lines file each finished recipe is appended to")
    p.add_argument("--render", action="store_true", help="only write the table from the runs")
    p.add_argument("--autoattack", nargs="+", metavar="NAME",
                   help="evaluate these finished recipes' cached models with AutoAttack instead")
    p.add_argument("--autoattack-n", type=int, default=1000, help="test images for --autoattack")
    p.add_argument("--levels", action="store_true",
                   help="record the first layer's switch-on levels of the finished robust runs' "
                        "cached models instead")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only these recipes, named as in the table (e.g. 'rob bs128 lr0.003 E20 s0')")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.autoattack:
        autoattack(args)
    elif args.levels:
        levels(args)
    elif not args.render:
        run(args)
    rows = all_rows()
    text = render(rows)
    write_text(RESULTS / "recipe_sweep.md", text)
    draw_frontier(rows, RESULTS / "recipe_sweep.png")
    print(text)


if __name__ == "__main__":
    main()
