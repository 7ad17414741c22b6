"""One process against two data-parallel processes (torchrun, gloo) for a short adversarial run.

    python benchmarks/ddp_speed.py [--dataset mnist-5k] [--rounds 2] [--cores 2]

Runs ``rvi train --adversarial --epochs 1`` (PGD-7 eps 0.3 alpha 0.1, batch 128) as one process
with ``--cores`` torch threads, as ``torchrun --nproc_per_node=2 -m rvi train`` with
``--cores / 2`` threads per process, and (for reference) as one process with ``--cores / 2``
threads, in turn (interleaved, so a busy machine slows all alike), each into a fresh folder.
Reports the epoch's seconds from the checkpoint (training only) and the command's wall time
(imports and process-group start included), medians over the rounds, and the load average
before and after. Writes ``benchmarks/results/ddp_speed.md``.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rvi

from _common import RESULTS, machine, write_text


def run(processes: int, threads: int, dataset: str, out: Path) -> tuple:
    """(epoch seconds, wall seconds, images) of one ``rvi train`` run."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(rvi.__file__).parent.parent),
                                         env.get("PYTHONPATH", "")])
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable])
    cmd = launcher + ["-m", "rvi", "train", "--dataset", dataset, "--adversarial", "--epochs", "1",
                      "--quiet", "--dist-backend", "gloo", "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    (checkpoint,) = out.glob("*.pt")
    state = rvi.load_checkpoint(checkpoint)
    return state["history"][0]["seconds"], wall, state["dataset"]["n_train"]


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cores", type=int, default=2, help="threads in all, for either variant")
    args = p.parse_args()
    load_before = os.getloadavg()
    variants = [(1, args.cores), (2, args.cores // 2), (1, args.cores // 2)]
    times: dict = {variant: [] for variant in variants}
    n_images = None
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for processes, threads in variants:
                out = Path(tmp) / f"r{round_}-p{processes}-t{threads}"
                epoch, wall, n_images = run(processes, threads, args.dataset, out)
                times[processes, threads].append((epoch, wall))
                print(f"round {round_ + 1}: {processes} process(es) x {threads} thread(s): "
                      f"epoch {epoch:.1f} s, wall {wall:.1f} s", flush=True)
    load_after = os.getloadavg()
    rows = []
    for processes, threads in variants:
        epoch = statistics.median(t[0] for t in times[processes, threads])
        wall = statistics.median(t[1] for t in times[processes, threads])
        rows.append((processes, threads, epoch, wall, n_images / epoch))
    base = rows[0][2]
    load_note = (". Other work shared the machine while this ran."
                 if max(load_before[0], load_after[0]) >= 1
                 else " (below 1 on 2 cores: the machine was otherwise idle).")
    text = [f"# 1 vs 2 data-parallel processes: one adversarial epoch on {args.dataset}", "",
            f"`python benchmarks/ddp_speed.py --dataset {args.dataset} --rounds {args.rounds} "
            f"--cores {args.cores}`", "",
            f"Machine: {machine('cpu')}.",
            f"Load average (1, 5, 15 min) before: {load_before[0]:.2f} {load_before[1]:.2f} "
            f"{load_before[2]:.2f}; after: {load_after[0]:.2f} {load_after[1]:.2f} "
            f"{load_after[2]:.2f}{load_note}", "",
            f"`rvi train --adversarial --epochs 1` (LeNet, PGD-7 eps 0.3 alpha 0.1, batch 128, "
            f"{n_images} images), median of {args.rounds} interleaved rounds:", "",
            "| processes | threads each | epoch seconds | wall seconds (with start) | images/s "
            "| epoch speed-up vs the first row |", "| --- | --- | --- | --- | --- | --- |"]
    for processes, threads, epoch, wall, rate in rows:
        text.append(f"| {processes} | {threads} | {epoch:.1f} | {wall:.1f} | {rate:.0f} "
                    f"| {base / epoch:.2f}x |")
    text.append("")
    write_text(RESULTS / "ddp_speed.md", "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
