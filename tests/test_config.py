import dataclasses
import json
import re

import pytest

from rvi._core import compat
from rvi.config import (CELL_OPTIONS, AttackConfig, BenchmarkConfig, CellOptions, SweepConfig, TrainConfig,
                        dataset_attack, parse_eval_attack)
from rvi.studies.sweep_job import SweepJob


def test_attack_defaults_are_the_seed_attack():
    attack = AttackConfig()
    assert (attack.name, attack.eps, attack.alpha, attack.steps) == ("pgd", 0.3, 0.1, 7)
    assert attack.label == "PGD-7 eps=0.3 alpha=0.1"
    assert AttackConfig(name="fgsm").label == "FGSM eps=0.3"


def test_train_defaults_are_the_recommended_recipe():
    config = TrainConfig()
    assert (config.optimizer, config.lr, config.schedule, config.batch_size, config.epochs) == \
        ("adam", 3e-3, "onecycle", 128, None)
    robust = TrainConfig(adversarial=True)
    # natural and adversarial training get the same budget (a comparison of the two never
    # compares budgets as well): 12 epochs with the threshold start, else 40
    for start, base in ((True, 12), (False, 40)):
        assert config.epochs_for(60_000, with_threshold_start=start) == \
            robust.epochs_for(60_000, with_threshold_start=start) == base
    # 4,000 images are 32 steps an epoch: 1,000 steps need 32 epochs (at least the base)
    assert robust.epochs_for(4_000, with_threshold_start=True) == 32
    assert robust.epochs_for(4_000, with_threshold_start=False) == 40
    # 1,000 images are 8 steps an epoch: 1,000 steps need 125 epochs, at most 4x the base
    assert config.epochs_for(1_000, with_threshold_start=False) == 125
    assert config.epochs_for(1_000, with_threshold_start=True) == 48
    assert TrainConfig(adversarial=True, epochs=3).epochs_for(4_000, with_threshold_start=True) == 3
    # the automatic adversarial recipe warms its eps up over a quarter (an eighth) of its epochs
    # and holds the threshold start for half of them, in proportion on small datasets; a recipe
    # with its epochs given, or a natural one, has neither unless asked
    assert robust.resolved(60_000, with_threshold_start=True) == TrainConfig(
        adversarial=True, epochs=12, eps_warmup_epochs=3.0, threshold_start_epochs=6)
    assert robust.resolved(4_000, with_threshold_start=True) == TrainConfig(
        adversarial=True, epochs=32, eps_warmup_epochs=8.0, threshold_start_epochs=16)
    assert robust.resolved(60_000, with_threshold_start=False) == TrainConfig(
        adversarial=True, epochs=40, eps_warmup_epochs=5.0, threshold_start_epochs=0)
    assert robust.warmup_for(1_000, with_threshold_start=False) == 125 / 8
    assert TrainConfig(adversarial=True, epochs=40).resolved(60_000, with_threshold_start=True) == \
        TrainConfig(adversarial=True, epochs=40, eps_warmup_epochs=0.0, threshold_start_epochs=0)
    assert config.resolved(60_000, with_threshold_start=True) == TrainConfig(
        epochs=12, eps_warmup_epochs=0.0, threshold_start_epochs=0)
    # at eps 1 the threshold would open at 0: the automatic recipe holds no start
    everything = TrainConfig(adversarial=True, attack=AttackConfig(eps=1.0, alpha=0.1))
    assert everything.threshold_start_for(60_000, with_threshold_start=True) == 0
    with pytest.raises(ValueError, match="n_images must be an integer >= 1, got 0"):
        config.epochs_for(0, with_threshold_start=True)
    with pytest.raises(ValueError, match="with_threshold_start must be True or False, got 1"):
        config.epochs_for(10, with_threshold_start=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": 2.0}, "eps must be in (0.0, 1.0], got 2.0"),
    ({"eps": 0.0}, "eps must be in (0.0, 1.0], got 0.0"),
    ({"eps": float("nan")}, "eps must be in"),
    ({"alpha": -0.1}, "alpha must be in (0.0, 1.0], got -0.1"),
    ({"steps": 0}, "steps must be an integer >= 1, got 0"),
    ({"steps": 2.5}, "steps must be an integer >= 1, got 2.5"),
    ({"restarts": 0}, "restarts must be an integer >= 1, got 0"),
    ({"name": "cw"}, "attack name must be one of fgsm, pgd, autoattack; got 'cw'"),
    ({"random_start": "yes"}, "random_start must be True or False, got 'yes'"),
])
def test_bad_attack_config(kwargs, message):
    with pytest.raises(ValueError) as err:
        AttackConfig(**kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"batch_size": -1}, "batch_size must be an integer >= 1, got -1"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of adam, sgd; got 'lbfgs'"),
    ({"schedule": "step"}, "schedule must be one of constant, onecycle, cosine; got 'step'"),
    ({"lr": 0}, "lr must be in (0.0, 10.0], got 0"),
    ({"momentum": 1.5}, "momentum must be in [0.0, 1.0], got 1.5"),
    ({"seed": -3}, "seed must be an integer >= 0, got -3"),
    ({"adversarial": 1}, "adversarial must be True or False, got 1"),
    ({"adversarial": True, "attack": AttackConfig(name="autoattack")},
     "attack name for adversarial training must be fgsm or pgd"),
])
def test_bad_train_config(kwargs, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**kwargs)
    assert message in str(err.value)


def test_dict_round_trip_keeps_nested_attack():
    config = TrainConfig(adversarial=True, attack=AttackConfig(eps=0.2, steps=3), epochs=4)
    again = TrainConfig.from_dict(config.to_dict())
    assert again == config and isinstance(again.attack, AttackConfig)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"epochz": 3})


def test_benchmark_attack_help_states_the_real_default():
    import dataclasses as dc

    from rvi.config import BenchmarkConfig

    help_text = {f.name: f.metadata["help"] for f in dc.fields(BenchmarkConfig)}["attack"]
    default = BenchmarkConfig().attack
    assert "MNIST eps 0.3 alpha 0.1" in help_text and "CIFAR-10 8/255 / 2/255" in help_text
    assert (default.name, default.steps, default.eps, default.alpha) == ("pgd", 7, 0.3, 0.1)


@pytest.mark.parametrize("changes, message", [
    ({"eval_attacks": None}, "eval_attacks must be a tuple without repeats, got None"),
    ({"eval_attacks": ("fgsm", "fgsm")}, "eval_attacks must be a tuple without repeats"),
    ({"out_dir": 5}, "out_dir must be a non-empty string, got 5"),
    ({"cache_dir": ""}, "cache_dir must be a non-empty string or None, got ''"),
    ({"device": None}, "device must be a non-empty string, got None"),
])
def test_benchmark_config_refuses_bad_simple_fields(changes, message):
    from rvi.config import BenchmarkConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        BenchmarkConfig(**changes)


METHOD_LIST = "guided_backprop, saliency, integrated_gradients, smoothgrad"
METRIC_LIST = ("inner, cosine, foreground_mass, alignment_logit, alignment, alignment_margin, gini, "
               "deletion, insertion, infidelity, sensitivity_max, deletion_gain, deletion_gain_blur, "
               "lerf_morf, "
               "infidelity_unexplained, quantus:Sparseness, quantus:PixelFlipping, quantus:Infidelity, "
               "quantus:MaxSensitivity, quantus:ROAD, quantus:RandomLogit")


@pytest.mark.parametrize("cls", ["BenchmarkConfig", "SweepConfig"])
@pytest.mark.parametrize("changes, message", [
    ({"methods": ("gradcam",)}, f"methods entry must be one of {METHOD_LIST}; got 'gradcam'"),
    ({"metrics": ("ssim",)}, f"metrics entry must be one of {METRIC_LIST}; got 'ssim'"),
    ({"methods": ()}, "methods must be a non-empty tuple without repeats, got ()"),
    ({"metrics": ("gini", "gini")}, "metrics must be a non-empty tuple without repeats"),
])
def test_method_and_metric_names_are_checked_against_the_registries(cls, changes, message):
    import rvi.config

    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(rvi.config, cls)(**changes)


def test_every_registered_name_is_accepted():
    from rvi.config import DEFAULT_METRICS, BenchmarkConfig, SweepConfig
    from rvi._core.registry import METHOD_REGISTRY, METRIC_REGISTRY

    for cls in (BenchmarkConfig, SweepConfig):
        config = cls(methods=METHOD_REGISTRY.names(), metrics=METRIC_REGISTRY.names())
        assert config.methods == METHOD_REGISTRY.names()
        assert cls().metrics == DEFAULT_METRICS


def test_config_alone_validates_names_in_a_fresh_process():
    """Importing rvi.config runs rvi/__init__, which registers every method and metric first."""
    import subprocess
    import sys

    code = ("import rvi.config as c\n"
            "c.BenchmarkConfig(methods=('smoothgrad',), metrics=('sensitivity_max',))\n"
            "try:\n    c.SweepConfig(metrics=('ssim',))\nexcept ValueError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"metrics entry must be one of {METRIC_LIST}; got 'ssim'"


def test_benchmark_attacks_default_to_the_datasets():
    from rvi.config import DATASET_ATTACK, dataset_attack

    for dataset, (eps, alpha) in DATASET_ATTACK.items():
        config = BenchmarkConfig(dataset=dataset)
        assert config.attack == dataset_attack(dataset) == AttackConfig(eps=eps, alpha=alpha)
        assert config.robust == TrainConfig(adversarial=True, attack=config.attack)
        assert config.natural == TrainConfig(attack=config.attack)
        # a saved config holds the resolved values and loads back equal
        assert BenchmarkConfig.from_dict(json.loads(config.to_json())) == config
    assert BenchmarkConfig(dataset="cifar10").attack.eps == 8 / 255


def test_given_benchmark_attacks_are_kept_and_partial_dicts_filled_from_the_dataset():
    given = AttackConfig(eps=0.2, alpha=0.05)
    config = BenchmarkConfig(dataset="cifar10", attack=given)
    assert config.attack == given and config.robust.attack.eps == 8 / 255
    config = BenchmarkConfig.from_dict({"dataset": "cifar10", "attack": {"eps": 0.05},
                                        "robust": {"attack": {"steps": 3}, "epochs": 2}})
    assert (config.attack.eps, config.attack.alpha) == (0.05, 2 / 255)
    assert (config.robust.adversarial, config.robust.epochs, config.robust.attack.steps,
            config.robust.attack.eps) == (True, 2, 3, 8 / 255)
    with pytest.raises(ValueError, match="dataset must be one of"):
        BenchmarkConfig.from_dict({"dataset": "imagenet"})


def test_recipes_written_before_the_warmup_field_read_as_no_warmup():
    old = TrainConfig(adversarial=True).to_dict()
    del old["eps_warmup_epochs"]  # a complete recipe as rvi 0.5 wrote it
    assert TrainConfig.from_dict(old).eps_warmup_epochs == 0.0
    assert BenchmarkConfig.from_dict({"robust": old}).robust.eps_warmup_epochs == 0.0
    # a partial recipe is filled from the defaults, automatic warm-up and start included
    assert TrainConfig.from_dict({"adversarial": True}).eps_warmup_epochs is None
    assert TrainConfig.from_dict({"adversarial": True}).threshold_start_epochs is None
    assert BenchmarkConfig.from_dict({"robust": {"lr": 1e-3}}).robust.eps_warmup_epochs is None


def test_recipes_written_before_the_lr_shape_field_keep_their_shape():
    current = TrainConfig(adversarial=True, epochs=40, eps_warmup_epochs=5.0, threshold_start_epochs=0)
    rvi_07 = current.to_dict()
    del rvi_07["threshold_start_epochs"]  # a complete recipe as rvi 0.8 wrote it
    assert TrainConfig.from_dict(rvi_07) == current
    del rvi_07["lr_warmup_share"]  # a complete recipe as rvi 0.6-0.7 wrote it
    assert TrainConfig.from_dict(rvi_07) == current
    del rvi_07["eps_warmup_epochs"]  # and as rvi 0.5 wrote it
    assert TrainConfig.from_dict(rvi_07) == dataclasses.replace(current, eps_warmup_epochs=0.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"lr_warmup_share": 0.0}, r"lr_warmup_share must be in \(0.0, 1.0\], got 0.0"),
    ({"lr_warmup_share": 1.5}, "lr_warmup_share must be in .*got 1.5"),
    ({"lr_warmup_share": 1.0}, "lr_warmup_share must be below 1.*got 1.0"),
    ({"lr_warmup_share": 0.5, "schedule": "cosine"},
     "lr_warmup_share needs schedule='onecycle', got 0.5 with schedule='cosine'"),
])
def test_bad_lr_warmup_share(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_l2_configs_keep_every_l_inf_dict_and_cache_key():
    """``norm`` is left out of dicts at its legacy value, so L-inf configs, checkpoints, cache
    keys and sweep record keys are those rvi 0.11 made (keys pinned from rvi 0.11.0)."""
    from rvi.models.cache import cache_key

    assert "norm" not in AttackConfig().to_dict()
    assert "norm" not in json.dumps(BenchmarkConfig().to_dict())
    assert AttackConfig(norm="L2", eps=2.0, alpha=0.5).to_dict()["norm"] == "L2"
    info = {"name": "mnist", "fingerprint": "0" * 64, "n_train": 60000, "num_classes": 10,
            "image_shape": [1, 28, 28], "split": None}
    config = BenchmarkConfig(dataset="mnist")
    assert cache_key(info, "lenet", config.recipe("robust", 0)) == "89792e05267c2128"
    assert cache_key(info, "lenet", config.recipe("natural", 3)) == "a61a441b7ca8954f"
    l2 = dataclasses.replace(config.robust, attack=dataset_attack("mnist", "L2"))
    assert cache_key(info, "lenet", l2) != cache_key(info, "lenet", config.robust)
    assert AttackConfig.from_dict(l2.attack.to_dict()) == l2.attack


def test_l2_defaults_per_dataset_and_the_standard_recipe():
    assert dataset_attack("mnist", "L2") == AttackConfig(eps=2.0, alpha=0.5, norm="L2")
    assert dataset_attack("cifar10", "L2").eps == 0.5
    with pytest.raises(ValueError, match="'fashion-mnist' has no stated L2 budget"):
        dataset_attack("fashion-mnist", "L2")
    # the threshold start is an L-inf device: an L2 recipe (and its natural partner, holding
    # the same attack) trains the standard recipe's 40 epochs with a 5-epoch warm-up
    for adversarial, warmup in ((False, 0.0), (True, 5.0)):
        recipe = TrainConfig(adversarial=adversarial, attack=dataset_attack("mnist", "L2"))
        resolved = recipe.resolved(60000, with_threshold_start=True)
        assert (resolved.epochs, resolved.eps_warmup_epochs,
                resolved.threshold_start_epochs) == (40, warmup, 0)
    resolved = TrainConfig(adversarial=True).resolved(60000, with_threshold_start=True)
    assert (resolved.epochs, resolved.threshold_start_epochs) == (12, 6)  # L-inf: as before


def test_a_benchmark_norm_chooses_every_default_attack():
    l2 = BenchmarkConfig(dataset="mnist", norm="L2")
    expected = dataset_attack("mnist", "L2")
    assert l2.attack == l2.robust.attack == l2.natural.attack == expected
    assert l2.robust.resolved(60000, with_threshold_start=True).epochs == 40
    assert l2.to_dict()["norm"] == "L2" and "norm" not in BenchmarkConfig().to_dict()
    partial = BenchmarkConfig.from_dict({"dataset": "mnist", "norm": "L2", "attack": {"steps": 10}})
    assert (partial.attack.eps, partial.attack.steps, partial.attack.norm) == (2.0, 10, "L2")
    assert BenchmarkConfig.from_dict(l2.to_dict()) == l2
    with pytest.raises(ValueError, match="'fashion-mnist' has no stated L2 budget"):
        BenchmarkConfig(dataset="fashion-mnist", norm="L2")
    with pytest.raises(ValueError, match="norm must be one of"):
        BenchmarkConfig(norm="L1")


def test_eval_attacks_in_the_other_norm_take_the_datasets_budget_in_it():
    linf = dataset_attack("mnist")
    assert parse_eval_attack("pgd@Linf", linf, "mnist") == parse_eval_attack("pgd", linf)
    assert parse_eval_attack("autoattack@L2", linf, "mnist") == AttackConfig(
        name="autoattack", eps=2.0, alpha=0.5, norm="L2")
    restarts = parse_eval_attack("pgd-40x5@L2", linf, "mnist")
    assert (restarts.norm, restarts.eps, restarts.steps, restarts.restarts) == ("L2", 2.0, 40, 5)
    assert restarts.alpha == pytest.approx(2.5 * 2.0 / 40)
    # an L2 study's own attack is the base of its L2 entries (its eps, not the default's)
    own = AttackConfig(eps=1.5, alpha=0.3, norm="L2")
    assert parse_eval_attack("pgd@L2", own, "mnist") == own
    fgsm = AttackConfig(name="fgsm", eps=0.3, alpha=0.1)
    assert parse_eval_attack("fgsm@Linf", own, "mnist") == fgsm
    config = BenchmarkConfig(dataset="mnist", eval_attacks=("pgd", "pgd@L2", "autoattack@L2"))
    assert config.eval_attacks == ("pgd", "pgd@L2", "autoattack@L2")


@pytest.mark.parametrize("spec, dataset, message", [
    ("pgd@L1", "mnist", "eval_attacks entry's norm (after @) must be one of Linf, L2; got 'L1'"),
    ("pgd@L2", None, "pgd@L2 attacks in another norm than the attack's Linf"),
    ("pgd@L2", "fashion-mnist", "'fashion-mnist' has no stated L2 budget"),
    ("cw@L2", "mnist", "eval_attacks entry must be fgsm, pgd, pgd-STEPSxRESTARTS or autoattack"),
])
def test_bad_eval_attack_norms(spec, dataset, message):
    with pytest.raises(ValueError) as err:
        parse_eval_attack(spec, AttackConfig(), dataset)
    assert message in str(err.value)


def test_a_sweep_refuses_eval_attacks_in_another_norm():
    from rvi.config import SweepConfig
    with pytest.raises(ValueError, match="rvi sweep evaluates in one norm"):
        SweepConfig(eval_attacks=("pgd", "autoattack@L2"))


def test_compat_reads_every_older_stored_format_into_the_current_one():
    """rvi._core.compat, the one place older saved formats are read: each shim's output has the
    current format's keys and values as that older version meant them."""
    fields = {spec.name for spec in dataclasses.fields(TrainConfig)}
    old = {k: v for k, v in TrainConfig(adversarial=True, epochs=20).to_dict().items()
           if k not in ("eps_warmup_epochs", "threshold_start_epochs", "lr_warmup_share")}
    upgraded = compat.upgrade_train_config(old, fields)  # rvi 0.5: no warm-up, no start
    assert (upgraded["eps_warmup_epochs"], upgraded["threshold_start_epochs"]) == (0.0, 0)
    assert TrainConfig.from_dict(old) == TrainConfig(adversarial=True, epochs=20,
                                                     eps_warmup_epochs=0.0, threshold_start_epochs=0)
    assert compat.upgrade_train_config({"epochs": 3}, fields) == {"epochs": 3}  # partial: untouched
    result = {"format": "rvi-result-1", "config": {"dataset": "synthetic"}, "models": {"x": 1}}
    current = compat.upgrade_result(result)
    assert current["format"] == compat.RESULT_FORMATS[-1] and current["models"] is None
    assert current["config"]["randomization_draws"] == 1 and current["mechanism"] is None
    assert compat.upgrade_sweep_record({"job": {}})["mechanism"] == {}
    recipe = {"eps_warmup_epochs": 5.0, "lr_warmup_share": 0.3, "threshold_start_epochs": 0, "seed": 1}
    assert compat.key_recipe(recipe, 0.3) == {"eps_warmup_epochs": 5, "seed": 1}


def test_the_per_cell_options_are_declared_once():
    """BenchmarkConfig, SweepConfig and a sweep's jobs take each per-cell option from
    CellOptions: same help and check; the defaults differ only where a study says why (a sweep's
    robustness axis is AutoAttack, so it evaluates with it by default)."""
    cell = {spec.name: spec for spec in dataclasses.fields(CellOptions)}
    assert tuple(cell) == CELL_OPTIONS
    for cls in (BenchmarkConfig, SweepConfig, SweepJob):
        fields = {spec.name: spec for spec in dataclasses.fields(cls)}
        assert all(fields[name].metadata == spec.metadata for name, spec in cell.items()), cls
    bench, sweep = BenchmarkConfig(), SweepConfig()
    assert [name for name in cell if getattr(bench, name) != getattr(sweep, name)] == \
        ["eval_attacks"]
    for config in (bench, sweep):
        with pytest.raises(ValueError, match="faithfulness_n must be an integer >= 1, got 0"):
            dataclasses.replace(config, faithfulness_n=0)
