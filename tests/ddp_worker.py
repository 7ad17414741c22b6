"""Run under torchrun by tests/test_distributed.py:
``ddp_worker.py train OUT_DIR``, ``ddp_worker.py evaluate OUT_DIR CHECKPOINT`` or
``ddp_worker.py bench OUT_DIR`` (after the test filled the model cache of :func:`bench_config`).

Every rank does the same calls; rank 0 writes what the test compares with single-process runs
into OUT_DIR (``train.pt``, ``evaluate.json`` or ``bench.pt``).
"""

import json
import pickle
import sys
from pathlib import Path

import torch

import rvi
import rvi.cli
from rvi import distributed as ddp
from rvi.config import AttackConfig, BenchmarkConfig, TrainConfig

torch.set_num_threads(1)

# 253 images in global batches of 63: every batch is split 32/31 and the last one (1 image)
# leaves rank 1 with nothing, so the uneven cases are exercised.
N_TRAIN, N_TEST, BATCH = 253, 10, 63
TRAIN_ATTACK = AttackConfig(eps=0.3, alpha=0.1, steps=2)
EVAL_ATTACKS = (AttackConfig(name="fgsm", eps=0.1), AttackConfig(eps=0.1, alpha=0.05, steps=3),
                AttackConfig(eps=0.1, alpha=0.05, steps=3, restarts=3))  # restarts: rvi.attack_part
EVAL_BATCH = 20


BENCH_ATTACK = AttackConfig(eps=0.3, alpha=0.1, steps=2)


def bench_config(out: Path) -> BenchmarkConfig:
    """The sharded benchmark: 48 images in blocks of 16 (rank 0: 0-31, rank 1: 32-47);
    SmoothGrad's noise, infidelity's perturbations, the noise explainer and faithfulness_n=40
    depend on the global image index."""
    return BenchmarkConfig(
        dataset="synthetic", natural=TrainConfig(epochs=2, lr=3e-3),
        robust=TrainConfig(adversarial=True, epochs=2, lr=3e-3, attack=BENCH_ATTACK),
        attack=BENCH_ATTACK, n_test=48, batch_size=16, methods=("guided_backprop", "smoothgrad"),
        metrics=("cosine", "foreground_mass", "infidelity", "alignment"), faithfulness_n=40,
        controls=("random_weights", "image", "noise", "cascading"), cascade_n=8,
        randomization_draws=2, grid_images=3,
        bootstrap=200, cache_dir=str(out / "cache"), out_dir=str(out / "cli"))


def compare_config() -> BenchmarkConfig:
    """rvi.compare: 75 images in blocks of 70 (rank 0: 0-69, rank 1: 70-74), so that rank 1
    starts inside a deletion batch (3 images a call; sensitivity-max takes 7); transferred
    attacks, predicted targets, a multi-restart PGD on the first 72 images and figures of 72
    images (more than rank 0's shard)."""
    return BenchmarkConfig(
        seeds=(3,), attack=BENCH_ATTACK, n_test=75, batch_size=70, transfer=True,
        target="predicted", methods=("saliency",),
        metrics=("cosine", "deletion", "sensitivity_max", "gini"),
        eval_attacks=("fgsm", "pgd", "pgd-2x2"), eval_n=72,
        controls=("random_weights", "edge", "independent"), cascade_n=6,
        randomization_draws=2, grid_images=72,
        bootstrap=200)


def compare_models(out: Path) -> dict:
    """The two cached models of :func:`bench_config`, as ``{"a": ..., "b": ...}``."""
    paths = sorted((out / "cache").glob("*.pt"))
    return {name: rvi.load_model(path) for name, path in zip("ab", paths)}


def configs():
    """The recipes the test also trains in one process."""
    natural = TrainConfig(epochs=1, batch_size=BATCH, lr=3e-3)
    adversarial = TrainConfig(epochs=2, batch_size=BATCH, lr=3e-3, adversarial=True,
                              attack=TRAIN_ATTACK)
    return natural, adversarial


class Interrupt(Exception):
    pass


def _stop_after_first(metrics):
    if metrics["epoch"] == 1:
        raise Interrupt


def _state(model):
    """Training flag and requires_grad flags, to check they are restored."""
    return model.training, {name: p.requires_grad for name, p in model.named_parameters()}


def train(out: Path) -> None:
    data = rvi.data.make_synthetic(N_TRAIN, N_TEST)
    natural_config, adversarial_config = configs()
    results, restored = {}, []
    for name, config, kwargs in (("natural", natural_config, {}),
                                 ("adversarial", adversarial_config,
                                  {"checkpoint_path": out / "full.pt"})):
        model = rvi.new_model("lenet", config).eval()
        before = _state(model)
        history = rvi.train_model(model, data.train_images, data.train_labels, config,
                                  architecture="lenet", quiet=True, **kwargs)
        restored.append(_state(model) == before)
        results[name] = {"weights": model.state_dict(), "history": history}

    # interrupted after epoch 1 (on every rank), then resumed from rank 0's checkpoint
    path = out / "resumed.pt"
    model = rvi.new_model("lenet", adversarial_config)
    try:
        rvi.train_model(model, data.train_images, data.train_labels, adversarial_config,
                        architecture="lenet", quiet=True, checkpoint_path=path,
                        on_epoch_end=_stop_after_first)
    except Interrupt:
        pass
    interrupted_epochs = len(rvi.load_checkpoint(path)["history"])
    model = rvi.new_model("lenet", adversarial_config)
    history = rvi.train_model(model, data.train_images, data.train_labels, adversarial_config,
                              architecture="lenet", quiet=True, checkpoint_path=path)
    results["resumed"] = {"weights": model.state_dict(), "history": history,
                          "interrupted_epochs": interrupted_epochs}

    # every rank must hold the same weights
    sums = [[float(v.double().sum()) for v in results[k]["weights"].values()] for k in results]
    gathered = ddp.gather_records([{"rank": ddp.rank(), "sums": sums, "restored": restored}])
    if ddp.is_main():
        results["ranks"] = gathered
        results["world_size"] = ddp.world_size()
        torch.save(results, out / "train.pt")


def _fail():
    raise OSError("disk full")


def evaluate(out: Path, checkpoint: str) -> None:
    # the command line first: rank 0 prints the summed result (the test reads it)
    rvi.cli.main(["evaluate", checkpoint, "--attacks", "fgsm", "pgd", "--attack-eps", "0.1",
                  "--attack-steps", "3", "--n", "100", "--json"])
    data = rvi.data.make_synthetic()
    model = rvi.load_model(checkpoint)
    images, labels = data.test_images, data.test_labels
    sharded = rvi.evaluate(model, images, labels, EVAL_ATTACKS, batch_size=EVAL_BATCH, seed=5,
                           distributed=True)
    part = ddp.shard(len(images), align=EVAL_BATCH)
    adversarial = rvi.attack(model, images[part], labels[part], EVAL_ATTACKS[1],
                             batch_size=EVAL_BATCH, seed=5, offset=part.start)
    records = [{"index": i, "prediction": int(p), "sum": float(x.double().sum())}
               for i, p, x in zip(range(len(images))[part], rvi.predict(model, adversarial),
                                  adversarial)]
    gathered = ddp.gather_records(records)
    try:  # a failing rank-0-only write must raise on every rank, not leave rank 1 waiting
        ddp.on_main(_fail)
        failure = None
    except Exception as err:
        failure = f"{type(err).__name__}: {err}"
    every_rank = ddp.gather_records([{"rank": ddp.rank(), "result": sharded, "failure": failure,
                                      "shard": [part.start, part.stop]}])
    if ddp.is_main():
        (out / "evaluate.json").write_text(json.dumps(
            {"world_size": ddp.world_size(), "ranks": every_rank, "records": gathered}))


def bench(out: Path) -> None:
    """run_benchmark and rvi.compare, every rank with the same arguments."""
    config = bench_config(out)
    benchmark = rvi.run_benchmark(config)
    data = rvi.data.make_synthetic()
    compared = rvi.compare(compare_models(out), data.test_images, data.test_labels,
                           compare_config())
    nothing = [benchmark is None, compared is None]
    every_rank = ddp.gather_records([{"rank": ddp.rank(), "none": nothing}])
    if ddp.is_main():
        (out / "bench.pkl").write_bytes(pickle.dumps(
            {"benchmark": benchmark, "compare": compared, "ranks": every_rank}))


if __name__ == "__main__":
    scenario, out, *rest = sys.argv[1:]
    with ddp.process_group("gloo") as distributed:
        assert distributed, "run me under torchrun with 2+ processes"
        {"train": train, "evaluate": evaluate, "bench": bench}[scenario](Path(out), *rest)
