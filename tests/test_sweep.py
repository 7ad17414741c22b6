"""Sweep recipes: eps 0 is the natural recipe, eps 0.3 is rvi's default robust recipe."""

import pytest

import rvi
from rvi.sweep import sweep_recipe


def test_recipes_match_the_benchmark_defaults():
    assert sweep_recipe(0.0) == rvi.TrainConfig()
    assert sweep_recipe(0.3) == rvi.TrainConfig(adversarial=True)
    assert sweep_recipe(0.3, seed=4).seed == 4


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.15, 0.2, 0.25, 0.4])
def test_step_is_a_third_of_eps(eps):
    attack = sweep_recipe(eps).attack
    assert attack.eps == eps and attack.steps == 7
    assert attack.alpha == pytest.approx(eps / 3, abs=1e-10)


@pytest.mark.parametrize("kwargs, message", [({"eps": 2.0}, "eps"), ({"eps": -0.1}, "eps"),
                                             ({"eps": 0.1, "seed": -1}, "seed")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sweep_recipe(**kwargs)
