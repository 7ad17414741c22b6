"""rvi.distributed and data-parallel training/evaluation.

The multi-process tests start two CPU processes with ``python -m torch.distributed.run`` (torchrun,
gloo backend) and compare what they write with the same work done here in one process.
"""

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist

import rvi
from rvi import distributed as ddp
from rvi._core.checks import chunks
from rvi.attacks.adversarial import skip_random_starts
from rvi.cli import main
from rvi.config import AttackConfig, BenchmarkConfig, TrainConfig
from rvi.scoring.pipeline import CellSpec
from rvi.scoring.pipeline import shard_align as _shard_align
from rvi.report.result import BenchmarkResult
from rvi.models.train import save_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402

WORKER = Path(__file__).parent / "ddp_worker.py"
#: Largest weight difference allowed between a 2-process and a 1-process run of the same recipe
#: (the gradient average over ranks only changes the order of float sums). Measured by
#: benchmarks/float_spread.py over 9 runs (oneDNN held to AMX/AVX-512, AVX-512 and AVX2; 1 thread,
#: 2 threads, 2 processes) on an Intel Xeon: at most 1.6e-7 natural and 1.2e-6 PGD; an AMD EPYC
#: with 2 threads differed from 2 processes by 1.4e-6. The tolerance is 7x the largest of these.
#: Drawing each rank's PGD noise without skipping the other ranks' noise gave 2e-2, so the
#: tolerance still separates the two by far.
WEIGHT_TOLERANCE = 1e-5
#: Per-epoch training loss: at most 6.0e-7 apart in the same 9 runs.
LOSS_TOLERANCE = 1e-5
#: Deletion AUCs of the images a shard starts with inside a deletion batch (model called on
#: fewer images than in one process): float32 rounding only.
DELETION_TOLERANCE = 1e-5


def _torchrun(*args, timeout=300):
    """Run ``python -m torch.distributed.run --standalone --nproc_per_node=2 ARGS`` with this
    test's rvi importable; return its stdout (fail with its output if it fails)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(rvi.__file__).parent.parent)] + env.get("PYTHONPATH", "").split(os.pathsep))
    env["OMP_NUM_THREADS"] = "1"
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # both processes on this machine: loopback
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *map(str, args)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def shard_align(config: BenchmarkConfig) -> int:
    """The shard block size of a benchmark config's cells (the number of images is irrelevant)."""
    return _shard_align(CellSpec.from_benchmark(config, 1000))


def _max_difference(a: dict, b: dict) -> float:
    assert list(a) == list(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# --- helpers without a process group: a world of one -------------------------------------------

@pytest.mark.parametrize("n, align, world", [(0, 1, 2), (1, 1, 2), (253, 1, 2), (90, 20, 2),
                                             (100, 500, 2), (1000, 250, 3), (7, 2, 4)])
def test_shards_are_contiguous_ordered_balanced_and_cover_everything(n, align, world):
    parts = [ddp.shard(n, align=align, rank=r, world_size=world) for r in range(world)]
    assert [i for part in parts for i in range(n)[part]] == list(range(n))
    for part in parts[:-1]:
        assert part.stop % align == 0 or part.stop == n
    blocks = [-(-(p.stop - p.start) // align) for p in parts]
    assert max(blocks) - min(blocks) <= 1 and blocks == sorted(blocks, reverse=True)


def test_shard_refuses_bad_arguments():
    with pytest.raises(ValueError, match="rank must be below world_size 2, got 2"):
        ddp.shard(10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="n must be an integer >= 0, got -1"):
        ddp.shard(-1)
    with pytest.raises(ValueError, match="align must be an integer >= 1, got 0"):
        ddp.shard(10, align=0)


def test_backend_choice():
    assert ddp.check_backend("gloo") == "gloo"
    assert ddp.check_backend(None) == ddp.check_backend("auto") == ddp.default_backend()
    with pytest.raises(ValueError, match="backend must be gloo or nccl, got 'mpi'"):
        ddp.check_backend("mpi")
    if not torch.cuda.is_available():
        assert ddp.default_backend() == "gloo"
        with pytest.raises(ValueError, match="backend 'nccl' needs CUDA"):
            ddp.check_backend("nccl")


def test_without_a_process_group_everything_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not ddp.init("gloo")  # not launched by torchrun: nothing to join
    assert (ddp.rank(), ddp.world_size(), ddp.is_main(), ddp.is_distributed()) == (0, 1, True, False)
    assert ddp.shard(5) == slice(0, 5)
    records = [{"i": 1}]
    assert ddp.gather_records(records) == records and ddp.gather_records(records) is not records
    assert ddp.all_sum([1, 2.5]) == [1.0, 2.5]
    assert ddp.on_main(lambda a, b=0: a + b, 1, b=2) == 3
    assert not ddp.active(None) and not ddp.active(False)
    with pytest.raises(ValueError, match="distributed=True needs an initialized process group"):
        ddp.active(True)
    with pytest.raises(ValueError, match="distributed must be True, False or None, got 'yes'"):
        ddp.active("yes")
    with pytest.raises(ValueError, match="records must be a list, got tuple"):
        ddp.gather_records(())
    with pytest.raises(ValueError, match="timeout_s must be a positive number or None, got 0"):
        ddp.init("gloo", timeout_s=0)


def test_unwrap_and_attacks_on_a_wrapped_model(lenet, batch, tmp_path):
    """In a one-process gloo group: attacks, evaluation and attributions given the DDP wrapper
    run on the module inside and give what the plain model gives; its eval mode is kept."""
    images, labels = batch
    config = AttackConfig(eps=0.1, alpha=0.05, steps=2)
    expected = rvi.attack(lenet, images, labels, config, seed=1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        wrapped = torch.nn.parallel.DistributedDataParallel(lenet)
        assert ddp.unwrap(wrapped) is lenet and ddp.unwrap(lenet) is lenet
        assert torch.equal(rvi.attack(wrapped, images, labels, config, seed=1), expected)
        assert rvi.evaluate(wrapped, images, labels, [config], distributed=True) == \
            rvi.evaluate(lenet, images, labels, [config])
        assert torch.equal(rvi.explain(wrapped, images, "predicted").maps,
                           rvi.explain(lenet, images, "predicted").maps)
        assert not lenet.training
    finally:
        dist.destroy_process_group()


def test_skipping_random_starts_gives_each_image_its_one_call_noise(lenet, batch):
    """The basis of sharded PGD: images [k:] attacked after skipping k images' random starts get
    exactly what one call on all images gives them (CPU generator)."""
    images, labels = batch
    config = AttackConfig(eps=0.1, alpha=0.05, steps=2)
    whole = rvi.attack(lenet, images, labels, config, seed=4, batch_size=6)
    for k in (1, 6, 11):
        part = rvi.attack(lenet, images[k:], labels[k:], config, seed=4, batch_size=6, offset=k)
        assert torch.equal(part, whole[k:]), k
    unaligned = rvi.attack(lenet, images[6:], labels[6:], config, seed=4)
    assert not torch.equal(unaligned, whole[6:])  # without the offset the noise differs
    state = torch.get_rng_state()
    skip_random_starts(AttackConfig(name="fgsm"), 5, (1, 28, 28), torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)  # FGSM draws nothing
    with pytest.raises(ValueError, match="offset must be a multiple of 250 for AutoAttack, got 3"):
        rvi.attack(lenet, images, labels, AttackConfig(name="autoattack"), offset=3)


def test_offsets_give_each_image_its_one_call_draws(lenet, batch):
    """The basis of the sharded benchmark: SmoothGrad noise, faithfulness perturbations and the
    noise explainer of images [k:] with offset=k equal what one call on all images gives them."""
    images, labels = batch
    smooth = dict(method="smoothgrad", batch_size=20, smoothgrad_samples=5, seed=2)  # 4 a call
    whole = rvi.explain(lenet, images, "true", labels=labels, **smooth).maps
    targets = labels.clone()
    infidelity = rvi.metrics.faithfulness.infidelity(lenet, images, whole, targets, seed=2, batch_size=30)
    noise = rvi.scoring.controls.noise_map(images, seed=2)
    for k in (4, 12):
        part = rvi.explain(lenet, images[k:], "true", labels=labels[k:], offset=k, **smooth).maps
        assert torch.equal(part, whole[k:]), k
        part = rvi.metrics.faithfulness.infidelity(lenet, images[k:], whole[k:], targets[k:], seed=2,
                                                   batch_size=30, offset=k)
        assert torch.equal(part, infidelity[k:]), k
        assert torch.equal(rvi.scoring.controls.noise_map(images[k:], seed=2, offset=k), noise[k:]), k
    unaligned = rvi.explain(lenet, images[4:], "true", labels=labels[4:], **smooth).maps
    assert not torch.equal(unaligned, whole[4:])  # without the offset the noise differs
    with pytest.raises(ValueError, match=r"offset must be a multiple of 4 \(images per "
                                         r"SmoothGrad call\) for SmoothGrad, got 6"):
        rvi.explain(lenet, images, "true", labels=labels, offset=6, **smooth)


def test_shard_blocks_fit_every_random_stream():
    config = rvi.BenchmarkConfig(batch_size=100, methods=("integrated_gradients",),
                                 metrics=("deletion", "infidelity", "sensitivity_max"))
    assert shard_align(config) == 100  # 2 images per IG call, 10 per infidelity call
    assert shard_align(dataclasses.replace(config, methods=("smoothgrad",))) == 100
    assert shard_align(dataclasses.replace(config, batch_size=96, methods=("smoothgrad",))) \
        == 288  # 1 image per SmoothGrad call, 9 per sensitivity-max call
    assert shard_align(dataclasses.replace(config, batch_size=12, methods=("smoothgrad",))) == 12
    assert shard_align(dataclasses.replace(config, batch_size=120, methods=("smoothgrad",))) \
        == 120  # 2 images per SmoothGrad call, 12 per sensitivity-max call
    assert shard_align(dataclasses.replace(config, batch_size=64, methods=("smoothgrad",))) \
        == 192  # 1 and 6 images per call
    assert shard_align(dataclasses.replace(config, eval_attacks=("autoattack",))) == 500
    assert list(chunks(10, 4, offset=6)) == [slice(0, 2), slice(2, 6), slice(6, 10)]
    assert list(chunks(5, 4)) == [slice(0, 4), slice(4, 5)]


def test_cli_refuses_an_unknown_backend(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dist-backend", "mpi"])
    assert "invalid choice: 'mpi'" in capsys.readouterr().err


# --- two processes under torchrun ----------------------------------------------------------------

def test_two_process_training_matches_one_process(tmp_path):
    """Natural and PGD training, 2 gloo processes vs this process, same global batch and seed;
    an interrupted 2-process run resumes to the uninterrupted run's weights exactly."""
    _torchrun(WORKER, "train", tmp_path)
    got = torch.load(tmp_path / "train.pt", weights_only=False)
    assert got["world_size"] == 2
    sums = [rank["sums"] for rank in got["ranks"]]
    assert sums[0] == sums[1]  # every rank holds the same weights
    assert all(all(rank["restored"]) for rank in got["ranks"])  # eval mode, requires_grad back
    data = rvi.data.make_synthetic(ddp_worker.N_TRAIN, ddp_worker.N_TEST)
    for name, config in zip(("natural", "adversarial"), ddp_worker.configs()):
        model = rvi.new_model("lenet", config)
        history = rvi.train_model(model, data.train_images, data.train_labels, config, quiet=True)
        assert _max_difference(model.state_dict(), got[name]["weights"]) < WEIGHT_TOLERANCE, name
        for ours, theirs in zip(history, got[name]["history"]):
            assert ours["loss"] == pytest.approx(theirs["loss"], abs=LOSS_TOLERANCE)
            # equal in all 9 measured runs; one image's prediction may flip on another CPU
            assert ours["accuracy"] == pytest.approx(theirs["accuracy"],
                                                     abs=1.01 / ddp_worker.N_TRAIN)
    resumed, full = got["resumed"], got["adversarial"]
    assert resumed["interrupted_epochs"] == 1 and len(resumed["history"]) == 2
    for key, value in full["weights"].items():
        assert torch.equal(resumed["weights"][key], value), key
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]


def test_sharded_evaluation_equals_one_process(tmp_path):
    """rvi.evaluate(distributed=True) and the per-image records gathered on rank 0 equal the
    single-process results exactly; `rvi evaluate` under torchrun prints them once."""
    data = rvi.data.make_synthetic()
    config = TrainConfig(epochs=2, batch_size=64)
    model = rvi.new_model("lenet", config)
    history = rvi.train_model(model, data.train_images, data.train_labels, config, quiet=True)
    checkpoint = tmp_path / "lenet.pt"
    save_checkpoint(checkpoint, model, config, history, architecture="lenet",
                    dataset=data.info())
    stdout = _torchrun(WORKER, "evaluate", tmp_path, checkpoint)
    got = json.loads((tmp_path / "evaluate.json").read_text())
    model.eval()
    images, labels = data.test_images, data.test_labels
    expected = rvi.evaluate(model, images, labels, ddp_worker.EVAL_ATTACKS,
                            batch_size=ddp_worker.EVAL_BATCH, seed=5)
    assert 0.3 < expected["clean"] and 0 < expected[ddp_worker.EVAL_ATTACKS[1].label] < \
        expected["clean"]  # a model and attacks that make the counts informative
    assert [rank["result"] for rank in got["ranks"]] == [expected, expected]
    assert [rank["shard"] for rank in got["ranks"]] == [[0, 140], [140, 256]]
    assert [rank["failure"] for rank in got["ranks"]] == [
        "OSError: disk full", "RuntimeError: rank 0 failed: OSError: disk full"]
    adversarial = rvi.attack(model, images, labels, ddp_worker.EVAL_ATTACKS[1],
                             batch_size=ddp_worker.EVAL_BATCH, seed=5)
    assert got["records"] == [{"index": i, "prediction": int(p), "sum": float(x.double().sum())}
                              for i, (p, x) in enumerate(zip(rvi.predict(model, adversarial),
                                                             adversarial))]
    # the command line (500-image batches: rank 0 attacks all 100 images, rank 1 none)
    printed, end = json.JSONDecoder().raw_decode(stdout[stdout.index("{"):])
    assert "{" not in stdout[stdout.index("{") + end:]  # printed by rank 0 only
    attacks = [AttackConfig(name=name, eps=0.1, steps=3) for name in ("fgsm", "pgd")]
    assert printed == rvi.evaluate(model, images, labels, attacks, n=100)


def test_torchrun_entry_trains_adversarially_like_one_process(tmp_path):
    """`torchrun --nproc_per_node=2 -m rvi train --adversarial ...`: one checkpoint, written by
    rank 0, whose weights match single-process training of the same recipe."""
    out = tmp_path / "models"
    stdout = _torchrun("-m", "rvi", "train", "--dataset", "synthetic", "--adversarial",
                       "--epochs", "1", "--attack-steps", "2", "--out", out, "--quiet",
                       "--dist-backend", "gloo")
    assert stdout.count("training lenet on synthetic") == 1
    assert "2 processes (2 threads in all), backend gloo" in stdout
    (checkpoint,) = out.iterdir()
    state = rvi.load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(state["config"])
    assert config.adversarial and config.attack.steps == 2
    data = rvi.data.make_synthetic()
    model = rvi.new_model("lenet", config)
    history = rvi.train_model(model, data.train_images, data.train_labels, config, quiet=True)
    assert _max_difference(model.state_dict(), state["model"]) < WEIGHT_TOLERANCE
    assert state["history"][0]["accuracy"] == pytest.approx(history[0]["accuracy"],
                                                            abs=1.01 / len(data.train_images))


def _without_machine_lines(markdown: str) -> str:
    """The Markdown report less the lines about the run itself (machine, wall time)."""
    return "\n".join(line for line in markdown.splitlines()
                     if not line.startswith(("- machine:", "- wall time:")))


def _assert_same_result(got, expected, close=()):
    """Records, accuracy and randomization tables, figures' examples and the Markdown report
    of a sharded run equal the single-process run's exactly; the record columns in ``close``
    within float32 rounding (DELETION_TOLERANCE)."""
    for column in close:
        np.testing.assert_allclose(got.records[column], expected.records[column],
                                   rtol=DELETION_TOLERANCE, atol=DELETION_TOLERANCE)
    pd.testing.assert_frame_equal(got.records.drop(columns=list(close)),
                                  expected.records.drop(columns=list(close)), check_exact=True)
    pd.testing.assert_frame_equal(got.accuracy, expected.accuracy, check_exact=True)
    pd.testing.assert_frame_equal(got.cascading, expected.cascading, check_exact=True)
    assert got.examples == expected.examples
    assert got.models == expected.models
    assert _without_machine_lines(got.to_markdown()) == \
        _without_machine_lines(expected.to_markdown())


def test_sharded_benchmark_and_compare_equal_one_process(tmp_path):
    """run_benchmark and rvi.compare in 2 gloo processes (each rank attacks, explains and
    scores its shard; rank 0 gathers) give the single-process records and tables
    exactly (compare's deletion scores, where rank 1 starts inside a batch of 3, within
    DELETION_TOLERANCE). The models come from the cache that the single-process run fills."""
    config = ddp_worker.bench_config(tmp_path)
    assert shard_align(config) == 16 and shard_align(ddp_worker.compare_config()) == 70
    expected = rvi.run_benchmark(config)
    data = rvi.data.make_synthetic()
    expected_compare = rvi.compare(ddp_worker.compare_models(tmp_path), data.test_images,
                                   data.test_labels, ddp_worker.compare_config())
    _torchrun(WORKER, "bench", tmp_path)
    got = pickle.loads((tmp_path / "bench.pkl").read_bytes())
    assert got["ranks"] == [{"rank": 0, "none": [False, False]},
                            {"rank": 1, "none": [True, True]}]  # rank 0 alone aggregates
    # both ranks worked: image 47's scores come from rank 1, and faithfulness_n holds there too
    records = got["benchmark"].records
    assert records["guided_backprop/infidelity/clean"].iloc[:40].notna().all()
    assert records[records["image"] >= 40]["guided_backprop/infidelity/clean"].isna().all()
    _assert_same_result(got["benchmark"], expected)
    deletion = [c for c in expected_compare.records if "/deletion/" in c]
    _assert_same_result(got["compare"], expected_compare, close=deletion)


def test_torchrun_entry_benchmarks_like_one_process(tmp_path):
    """`torchrun --nproc_per_node=2 -m rvi bench --config ...`: rank 0 alone writes the result
    folder and prints the tables, which equal a single-process run's (cached models)."""
    config = dataclasses.replace(
        ddp_worker.bench_config(tmp_path), methods=("saliency",), metrics=("cosine", "gini"),
        controls=("random_weights", "noise"), eval_attacks=("fgsm",))
    expected = rvi.run_benchmark(config)  # also fills the model cache for the 2 processes
    (tmp_path / "bench.json").write_text(config.to_json())
    stdout = _torchrun("-m", "rvi", "bench", "--config", tmp_path / "bench.json", "--quiet",
                       "--dist-backend", "gloo")
    assert stdout.count("full tables: ") == 1  # the summary, printed by rank 0 only
    expected.save(tmp_path / "one-process")  # both through the same files
    _assert_same_result(BenchmarkResult.load(config.out_dir),
                        BenchmarkResult.load(tmp_path / "one-process"))
    from rvi.report.terminal import summary  # rank 0 printed the saved result's summary, once
    assert summary(BenchmarkResult.load(config.out_dir), Path(config.out_dir)) in stdout
