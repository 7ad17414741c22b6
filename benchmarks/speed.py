"""Training, attribution and evaluation throughput, measured in one process on the same data.

    python benchmarks/speed.py --data-dir ../shared/data [--images 5120] [--rounds 3]

Training (PGD-7 eps 0.3 alpha 0.1 and batch 128 unless named, Adam), images per second over ``--images`` MNIST
training images, each variant timed ``--rounds`` times in turn (interleaved, so a busy machine
slows all of them alike) and reported as the median:

- (a) the seed study's published loop: a torchvision ``DataLoader`` (``ToTensor``) feeding
  torchattacks PGD-7 and the update, written out here as the seed wrote it;
- (b) ``rvi.train_model`` as before rvi 0.2: contiguous (NCHW) memory layout, float32;
- (c) ``rvi.train_model`` as it is by default: channels-last layout on the CPU, float32;
- (d) (c) with ``precision="bfloat16"`` (autocast for the attack and the forward pass), an option;
- (e) (c) with the model wrapped in ``torch.compile`` (measured; rvi does not use it, see output);
- (f), (g) (c) with the fewer-steps training attacks of ``recipe_sweep.py``: PGD-3 (alpha 0.25)
  and PGD-2 (alpha 0.375), alpha = 2.5 eps / steps;
- (h) (c) with batch 64 (``recipe_sweep.py``'s batch-64 recipes): more optimizer steps per epoch.

Then attribution and faithfulness throughput (maps or scores per second) and evaluation
throughput and cost per image (FGSM, PGD-7, PGD-40 x 5 restarts, AutoAttack), each with the
model's weights in the default order (rvi 0.3) and channels-last (rvi now), on the cached
robust LeNet of ``recipes.ROBUST`` (an untrained LeNet when the cache lacks it). Writes
``benchmarks/results/speed.md`` with the machine and the ratios.
"""

import os
import statistics
import time
from pathlib import Path

import torch
import torchattacks
import torchvision
from torch import nn

import rvi
from rvi.models.cache import cached_model_path
from rvi.config import parse_eval_attack

from _common import RESULTS, machine, parser, write_text
from recipes import ROBUST, fewer_steps_attack

ATTACK = rvi.AttackConfig(eps=0.3, alpha=0.1, steps=7)


def seed_loop(data_dir: str, n_images: int) -> float:
    """(a): the seed notebook's loop over a DataLoader; returns images per second."""
    dataset = torchvision.datasets.MNIST(data_dir, train=True, download=False,
                                         transform=torchvision.transforms.ToTensor())
    subset = torch.utils.data.Subset(dataset, range(n_images))
    loader = torch.utils.data.DataLoader(subset, batch_size=128, shuffle=True)
    torch.manual_seed(0)
    model = rvi.build_model("lenet")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    pgd = torchattacks.PGD(model, eps=0.3, alpha=0.1, steps=7)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for images, labels in loader:
        adversarial = pgd(images, labels)
        loss = loss_fn(model(adversarial), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return n_images / (time.perf_counter() - started)


def rvi_epoch(images, labels, *, channels_last=None, precision="float32", compiled=False,
              attack=ATTACK, batch_size=128) -> float:
    """(b)-(h): one epoch of ``rvi.train_model`` on the images; returns images per second."""
    config = rvi.TrainConfig(adversarial=True, attack=attack, epochs=1, precision=precision,
                             batch_size=batch_size)
    model = rvi.new_model("lenet", config)
    if compiled:
        model = torch.compile(model)
    history = rvi.train_model(model, images, labels, config, quiet=True,
                              channels_last=channels_last)
    return len(images) / history[0]["seconds"]


def training_rows(args, data) -> list:
    images, labels = data.train_images[:args.images], data.train_labels[:args.images]
    variants = {
        "(a) seed loop: DataLoader + torchattacks PGD-7":
            lambda: seed_loop(args.data_dir, args.images),
        "(b) rvi before 0.2: NCHW, float32": lambda: rvi_epoch(images, labels, channels_last=False),
        "(c) rvi default: channels-last, float32": lambda: rvi_epoch(images, labels),
        "(d) rvi, precision=bfloat16": lambda: rvi_epoch(images, labels, precision="bfloat16"),
        "(e) rvi + torch.compile(model)": lambda: rvi_epoch(images, labels, compiled=True),
        "(f) rvi default, PGD-3 alpha 0.25": lambda: rvi_epoch(images, labels, attack=fewer_steps_attack(3)),
        "(g) rvi default, PGD-2 alpha 0.375": lambda: rvi_epoch(images, labels, attack=fewer_steps_attack(2)),
        "(h) rvi default, batch 64": lambda: rvi_epoch(images, labels, batch_size=64),
    }
    rvi_epoch(images[:256], labels[:256])  # warm-up: first-call allocations and oneDNN setup
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            times[name].append(run())
            print(f"{name}: {times[name][-1]:.0f} images/s", flush=True)
    seed_rate = statistics.median(times[next(iter(variants))])
    old_rate = statistics.median(times["(b) rvi before 0.2: NCHW, float32"])
    rows = []
    for name, rates in times.items():
        rate = statistics.median(rates)
        rows.append(f"| {name} | {rate:.0f} | {min(rates):.0f}-{max(rates):.0f} | "
                    f"{rate / seed_rate:.2f}x | {rate / old_rate:.2f}x | "
                    f"{60000 / rate / 60:.1f} min | {40 * 60000 / rate / 60:.1f} min |")
    return rows


def _timed_pair(run, rounds: int) -> tuple:
    """Median seconds of ``run()`` with rvi 0.3's layout (plain) and with channels-last weights
    (rvi's default on the CPU now), interleaved over ``rounds``."""
    times = {False: [], True: []}
    for _ in range(rounds):
        for fast in (False, True):
            rvi._core.modelstate.CPU_CHANNELS_LAST = fast
            started = time.perf_counter()
            run()
            times[fast].append(time.perf_counter() - started)
    rvi._core.modelstate.CPU_CHANNELS_LAST = True
    return statistics.median(times[False]), statistics.median(times[True])


def attribution_rows(model, data, n: int, rounds: int) -> list:
    images, labels = data.test_images[:n], data.test_labels[:n]
    rows = []
    for method in rvi.METHODS:
        plain, fast = _timed_pair(lambda: rvi.explain(model, images, "true", method, labels=labels,
                                                      batch_size=250), rounds)
        rows.append(f"| {method} | {n / plain:.0f} | {n / fast:.0f} | {plain / fast:.2f}x |")
    maps = rvi.explain(model, images, "true", labels=labels, batch_size=250).maps
    for metric in ("deletion", "infidelity"):
        plain, fast = _timed_pair(lambda: rvi.metrics.score(
            metric, maps, images, model=model, targets=labels, batch_size=250), rounds)
        rows.append(f"| {metric} (scores/s) | {n / plain:.0f} | {n / fast:.0f} | "
                    f"{plain / fast:.2f}x |")
    return rows


def evaluation_rows(model, data, n: int, n_autoattack: int) -> list:
    rows = []
    for spec, count in (("fgsm", n), ("pgd", n), ("pgd-40x5", n), ("autoattack", n_autoattack)):
        config = parse_eval_attack(spec, ATTACK)
        plain, fast = _timed_pair(lambda: rvi.attack(
            model, data.test_images[:count], data.test_labels[:count], config, batch_size=500), 1)
        rows.append(f"| {config.label} | {count} | {count / plain:.1f} | {count / fast:.1f} | "
                    f"{plain / fast:.2f}x | {1000 * fast / count:.2f} |")
    return rows


def scored_model(args, data):
    """The robust LeNet of ``recipes.ROBUST`` when the cache holds it (attacks then work as
    hard as in a real evaluation), else an untrained LeNet; and its description."""
    path = cached_model_path(args.cache_dir, data, "lenet", ROBUST)
    if path.exists():
        return rvi.load_model(path), f"the robust LeNet of `recipes.ROBUST` (`{path.name}`)"
    torch.manual_seed(0)
    return rvi.build_model("lenet").eval(), "an untrained LeNet (no cached robust model)"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5120, help="training images per timed run")
    p.add_argument("--rounds", type=int, default=3, help="timed runs of each training variant")
    p.add_argument("--out", default=str(RESULTS / "speed.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = rvi.load_dataset("mnist", args.data_dir, download=False)
    load_before = os.getloadavg()
    started = time.perf_counter()
    train = training_rows(args, data)
    model, described = scored_model(args, data)
    attribution = attribution_rows(model, data, 1000, args.rounds)
    evaluation = evaluation_rows(model, data, 1000, 100)
    lines = [
        "# Throughput", "",
        f"Measured by `benchmarks/speed.py` in one process ({time.perf_counter() - started:.0f} s)"
        f" on {machine(args.device)}. Load average (1 min) {load_before[0]:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after: above the core count means other work shared the "
        "cores, which slows every variant (the ratios come from interleaved runs).", "",
        f"## Adversarial training (PGD-7 and batch 128 unless named, {args.images} MNIST images, "
        f"median of {args.rounds} interleaved runs)", "",
        "The last column is what the default recipe's 40 epochs of full MNIST cost at that rate "
        "(the eps warm-up does not change the cost of an epoch).", "",
        "| variant | images/s | range | vs (a) seed loop | vs (b) rvi before | one epoch of 60,000 "
        "| 40 epochs |", "| --- | --- | --- | --- | --- | --- | --- |", *train, "",
        f"## Attribution and faithfulness (Captum; {described}; 1,000 test images, batch 250; "
        f"median of {args.rounds} interleaved runs)", "",
        "Before: the model's weights in the default (NCHW) order, as in rvi 0.3; after: "
        "channels-last weights while rvi runs a CPU model (rvi 0.4).", "",
        "| method | maps/s before | maps/s after | ratio |", "| --- | --- | --- | --- |",
        *attribution, "",
        f"## Evaluation attacks (torchattacks; {described}; one run each)", "",
        "Cost per image: wall time over the images attacked, after (channels-last). Restarts "
        "and AutoAttack's later attacks run only on the images still classified correctly, so "
        "their cost per image grows with the model's robustness.", "",
        "| attack | images | images/s before | images/s after | ratio | ms per image |",
        "| --- | --- | --- | --- | --- | --- |", *evaluation, "",
    ]
    write_text(Path(args.out), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
