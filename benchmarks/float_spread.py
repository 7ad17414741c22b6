"""How far float rounding moves trained weights between CPUs, thread counts, layouts and process
counts: the measured spread behind the agreement tolerances of tests/test_train.py and
tests/test_distributed.py.

Each "machine" is a subprocess with oneDNN capped at one instruction set (``ONEDNN_MAX_CPU_ISA``:
the CPU's best, AVX-512, AVX2; the caps stand in for other CPUs, since oneDNN's kernel choice,
and with it the order of float sums, follows the instruction set) and 1 or 2 torch threads.
Every machine trains the same recipes on the same synthetic images:

- ``ddp``: the recipes of tests/ddp_worker.py (LeNet, 253 images, batch 63; natural 1 epoch,
  PGD 2 epochs) in this process, and once more as 2 gloo processes under torchrun (1 thread
  each), which is what test_two_process_training_matches_one_process compares;
- ``layout``: PGD training for 2 epochs on 512 images in channels-last and in plain order, which
  test_fast_paths_agree_with_the_plain_path compares.

Prints, per quantity, the largest max-abs weight difference over every pair of runs that the
tests may compare (any two machines, or the two layouts on one machine) and writes nothing.

    python benchmarks/float_spread.py            # about 2 minutes on 2 cores
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import rvi
from rvi.config import AttackConfig, TrainConfig

ATTACK = AttackConfig(eps=0.3, alpha=0.1, steps=2)
ISAS = ("", "AVX512_CORE", "AVX2")  # "": the CPU's best (AMX or AVX-512 with bf16 here)
THREADS = (1, 2)


def ddp_recipes():
    """tests/ddp_worker.py's recipes: (name, config, images)."""
    data = rvi.data.make_synthetic(253, 10)
    return [("natural", TrainConfig(epochs=1, batch_size=63, lr=3e-3), data),
            ("adversarial", TrainConfig(epochs=2, batch_size=63, lr=3e-3, adversarial=True,
                                        attack=ATTACK), data)]


def train(config, data, **kwargs) -> dict:
    """The trained weights, plus the per-epoch training loss and accuracy under "history"."""
    model = rvi.new_model("lenet", config)
    history = rvi.train_model(model, data.train_images, data.train_labels, config, quiet=True,
                              **kwargs)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    weights["history"] = torch.tensor([[h["loss"], h["accuracy"]] for h in history],
                                      dtype=torch.float64)
    return weights


def child(out: str) -> None:
    """One machine: every recipe, saved to ``out``."""
    weights = {name: train(config, data) for name, config, data in ddp_recipes()}
    data = rvi.data.make_synthetic(512, 256)
    config = TrainConfig(adversarial=True, attack=ATTACK, epochs=2)
    for layout in (False, True):
        weights[f"layout-{layout}"] = train(config, data, channels_last=layout)
    torch.save(weights, out)


def ddp_child(out: str) -> None:
    """Under torchrun: the ddp recipes data-parallel; rank 0 saves."""
    from rvi import distributed as ddp

    torch.set_num_threads(1)
    with ddp.process_group("gloo"):
        weights = {name: train(config, data) for name, config, data in ddp_recipes()}
        if ddp.is_main():
            torch.save(weights, out)


def run(args, env_changes, out) -> dict:
    env = {k: v for k, v in dict(os.environ, **env_changes).items() if v}  # "" unsets
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    subprocess.run([sys.executable, *args, out], env=env, check=True, timeout=900)
    return torch.load(out)


def max_difference(a: dict, b: dict, keys=None) -> float:
    """Largest absolute difference over the weights (or over ``keys``)."""
    keys = keys or [k for k in a if k != "history"]
    return max(float((a[k] - b[k]).abs().max()) for k in keys)


def history_difference(a: dict, b: dict, column: int) -> float:
    """Largest difference of the per-epoch loss (column 0) or training accuracy (1)."""
    return float((a["history"][:, column] - b["history"][:, column]).abs().max())


def main() -> None:
    script = str(Path(__file__).resolve())
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for isa, threads in itertools.product(ISAS, THREADS):
            name = f"{isa or 'best'}/{threads}t"
            print(f"training on {name} ...", flush=True)
            runs[name] = run([script, "child"], {"ONEDNN_MAX_CPU_ISA": isa,
                                                 "OMP_NUM_THREADS": str(threads)},
                             f"{tmp}/{len(runs)}.pt")
        for isa in ISAS:
            name = f"{isa or 'best'}/2 processes"
            print(f"training on {name} ...", flush=True)
            runs[name] = run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              script, "ddp"], {"ONEDNN_MAX_CPU_ISA": isa, "OMP_NUM_THREADS": "1"},
                             f"{tmp}/{len(runs)}.pt")
    print(f"\ntorch {torch.__version__}, {rvi.__name__} {rvi.__version__}; machines: "
          f"{', '.join(runs)}\n")
    for recipe in ("natural", "adversarial"):
        spread = max((max_difference(a[recipe], b[recipe]), na, nb)
                     for (na, a), (nb, b) in itertools.combinations(runs.items(), 2))
        print(f"ddp {recipe}: largest weight difference between any two runs {spread[0]:.2e} "
              f"({spread[1]} vs {spread[2]})")
        for column, what in enumerate(("loss", "training accuracy")):
            worst = max(history_difference(a[recipe], b[recipe], column)
                        for a, b in itertools.combinations(runs.values(), 2))
            print(f"ddp {recipe}: largest per-epoch {what} difference {worst:.2e}")
    one = {n: r for n, r in runs.items() if "processes" not in n}
    within = max((max_difference(r["layout-False"], r["layout-True"]), n) for n, r in one.items())
    across = max((max_difference(a[f"layout-{la}"], b[f"layout-{lb}"]), na, nb)
                 for (na, a), (nb, b) in itertools.combinations(one.items(), 2)
                 for la, lb in itertools.product((False, True), repeat=2))
    print(f"layout: channels-last vs plain on one machine, largest {within[0]:.2e} ({within[1]}); "
          f"any two runs {across[0]:.2e} ({across[1]} vs {across[2]})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("child", "ddp"):
        (child if sys.argv[1] == "child" else ddp_child)(sys.argv[2])
    else:
        main()
